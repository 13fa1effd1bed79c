"""Email open pixel and click redirect: links rewritten at send time with signed per-delivery URLs, on by
default for marketing and off for transactional; the redirect reads its target back from the stored email
(no open redirect); each recorded once per delivery through the status machine."""
import re

import pytest
from django.db import DatabaseError
from django.test import Client

from notifier.models import Delivery, DeliveryEvent, NotificationType, SandboxMessage, Template
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.replay import dead_letter_replay
from notifier.pipeline.route import route_due
from notifier.tracking import click_token, open_token, tracked_html
from notifier.webhooks import tracking as tracking_views
from tests.conftest import make_reachable_user
from tests.fakes.sendgrid import FakeSendGrid
from tests.pipeline.test_route import make_notification
from tests.support.dead_letters import make_dead_letters, use_scripted_providers

pytestmark = pytest.mark.django_db

SALE_HTML = (
    '<p>Spring sale! <a href="https://shop.example/sale?from=mail&amp;id={{ order_id }}">See the sale</a></p>'
    '<p><a href="mailto:help@shop.example">Write to us</a> · <a href="#top">Top</a> · '
    "<a href='http://shop.example/shoes'>Shoes</a></p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)
SALE_URL = "https://shop.example/sale?from=mail&id=42"
CLICK = re.compile(r'href="(http://127\.0\.0\.1:8000(/api/v1/t/c/[^"]+))"')
PIXEL = re.compile(r'<img src="http://127\.0\.0\.1:8000(/api/v1/t/o/[^"]+\.gif)" width="1" height="1" alt=""')


def email_type(key: str, category: str, **fields) -> NotificationType:
    notification_type = NotificationType.objects.create(
        key=key, category=category, default_channels=["email"], default_priority="high",
        variables={"order_id": {"required": True}}, **fields)
    Template.objects.create(type=notification_type, channel="email", language="en", subject="Sale",
                            body="Spring sale! Unsubscribe: {{ unsubscribe_url }}", html_body=SALE_HTML)
    return notification_type


@pytest.fixture
def sale(db):
    return email_type("spring_sale", "marketing")


@pytest.fixture
def shopper(db):
    recipient = make_reachable_user("u_7", devices=())
    recipient.marketing_opt_in = True
    recipient.save()
    return recipient


def send_email(notification_type, recipient) -> tuple[Delivery, str]:
    """Route and send one email through the configured provider; the delivery and the HTML sent."""
    make_notification(notification_type, recipient)
    route_due("high")
    deliver_due("email", "high")
    delivery = Delivery.objects.filter(channel="email").latest("id")
    sent = SandboxMessage.objects.filter(delivery_id=delivery.id).values_list("message", flat=True).first()
    return delivery, sent["html_body"] if sent else ""


@pytest.fixture
def sent(sale, shopper):
    return send_email(sale, shopper)


def click_paths(html: str) -> list[str]:
    return [path for _, path in CLICK.findall(html)]


# --- rewriting -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_sendgrid():
    with FakeSendGrid(api_key="SG.test-key") as fake:
        yield fake


def test_a_marketing_email_sent_through_sendgrid_carries_tracked_links_and_a_pixel(sale, shopper, settings,
                                                                                      fake_sendgrid):
    fake_sendgrid.clear()
    settings.NOTIFIER_PROVIDER_CONFIG = {**settings.NOTIFIER_PROVIDER_CONFIG, "sendgrid": {
        "api_key": "SG.test-key", "from_email": "sale@shop.example", "host": fake_sendgrid.url}}
    settings.NOTIFIER_CHANNEL_PROVIDERS = {**settings.NOTIFIER_CHANNEL_PROVIDERS, "email": ["sendgrid"]}

    delivery, _ = send_email(sale, shopper)

    [request] = fake_sendgrid.requests
    html = next(part["value"] for part in request.body["content"] if part["type"] == "text/html")
    assert len(click_paths(html)) == 2  # the two web links; not mailto:, not the anchor, not the unsubscribe link
    assert 'href="mailto:help@shop.example"' in html and 'href="#top"' in html
    assert "https://shop.example/sale" not in html and "http://shop.example/shoes" not in html
    assert 'href="http://127.0.0.1:8000/api/v1/unsubscribe/' in html
    [pixel] = PIXEL.findall(html)
    assert html.index(pixel) < html.index("</body>")
    assert request.body["tracking_settings"] == {  # SendGrid's own tracking would wrap our links again
        "click_tracking": {"enable": False, "enable_text": False}, "open_tracking": {"enable": False}}
    delivery.refresh_from_db()
    assert "https://shop.example/sale?from=mail&amp;id=42" in delivery.content["html_body"]  # stored as rendered
    assert "/api/v1/t/" not in delivery.content["html_body"]


def test_a_transactional_email_is_not_tracked_by_default(shopper):
    receipt = email_type("receipt", "transactional")

    _, html = send_email(receipt, shopper)

    assert 'href="https://shop.example/sale?from=mail&amp;id=42"' in html
    assert "/api/v1/t/" not in html


@pytest.mark.parametrize("category, setting, tracked", [
    ("transactional", "on", True), ("marketing", "off", False), ("system", "default", False),
    ("marketing", "default", True),
])
def test_a_types_setting_decides_over_its_category(shopper, category, setting, tracked):
    notification_type = email_type("some_type", category, track_engagement=setting)

    _, html = send_email(notification_type, shopper)

    assert bool(click_paths(html)) is tracked
    assert bool(PIXEL.findall(html)) is tracked


def test_every_delivery_gets_urls_of_its_own():
    html = '<html><body><a href="https://shop.example/">Shop</a></body></html>'

    first, second = tracked_html(html, 1), tracked_html(html, 2)

    assert click_paths(first) != click_paths(second)
    assert click_token(1, 0) in first and click_token(2, 0) in second
    assert open_token(1) in first and open_token(2) in second


def test_a_campaigns_bodies_that_differ_by_their_unsubscribe_url_are_parsed_once_and_tracked_alike():
    from notifier.tracking import _tracked, _tracked_template, click_url, open_url

    def body(user: str) -> tuple[str, str]:
        unsubscribe = f"http://127.0.0.1:8000/api/v1/unsubscribe/{user}-token"
        return (f'<html><body><p><a href="https://shop.example/sale">Sale</a> <a href="mailto:x@shop.example">Mail</a>'
                f'</p><p>Not you? <a href="{unsubscribe}">Unsubscribe</a> ({unsubscribe})</p>'
                f'<a class="b" href="https://shop.example/b?x=1&amp;y=2">B</a></body></html>', unsubscribe)

    _tracked_template.cache_clear()
    for n in range(50):
        html, unsubscribe = body(f"user{n}")
        tracked = tracked_html(html, n, vary=unsubscribe)

        # What the parse of this very body makes, and what the reader of the stored email expects.
        assert tracked == _tracked(html, lambda index: click_url(n, index), open_url(n))
        assert unsubscribe in tracked and click_token(n, 0) in tracked and click_token(n, 3) in tracked
    assert _tracked_template.cache_info().misses == 1


def test_a_replayed_dead_letter_is_tracked_under_its_own_delivery(settings):
    receipt = email_type("receipt", "transactional", track_engagement="on")
    use_scripted_providers(settings)
    [dead] = make_dead_letters(receipt, 1)
    replay = dead_letter_replay(None, dead.id).delivery
    settings.NOTIFIER_CHANNEL_PROVIDERS = {**settings.NOTIFIER_CHANNEL_PROVIDERS, "email": ["sandbox"]}

    deliver_due("email", "high")

    html = SandboxMessage.objects.get(delivery_id=replay.id).message["html_body"]
    assert click_token(replay.id, 0) in html and open_token(replay.id) in html
    assert Client().get(click_paths(html)[0])["Location"] == SALE_URL
    assert Delivery.objects.get(id=replay.id).status == "clicked"
    assert Delivery.objects.get(id=dead.id).status == "dead"


# --- the click redirect --------------------------------------------------------------------------------

def test_a_click_redirects_to_the_link_in_the_email_and_is_recorded_once(sent):
    delivery, html = sent
    first_link = click_paths(html)[0]

    response = Client().get(first_link, HTTP_USER_AGENT="Mozilla/5.0 (test)")
    again = Client().get(first_link)

    assert response.status_code == again.status_code == 302
    assert response["Location"] == SALE_URL
    assert "no-store" in response["Cache-Control"]
    delivery.refresh_from_db()
    assert delivery.status == "clicked"
    assert delivery.clicked_at and delivery.opened_at  # a click proves the open
    [event] = DeliveryEvent.objects.filter(delivery=delivery, status="clicked")
    assert event.source == "click" and event.payload == {"url": SALE_URL, "user_agent": "Mozilla/5.0 (test)"}


def test_each_tracked_link_leads_to_its_own_url(sent):
    _, html = sent

    locations = [Client().get(path)["Location"] for path in click_paths(html)]

    assert locations == [SALE_URL, "http://shop.example/shoes"]


def test_a_tampered_click_token_is_a_400_and_records_nothing(sent):
    delivery, html = sent
    path = click_paths(html)[0]
    token = path.rsplit("/", 1)[1]
    forged = [
        path[:-2] + ("xx" if not path.endswith("xx") else "yy"),  # a changed signature
        path.replace(token, f"{delivery.id}.1:" + token.split(":", 1)[1]),  # another link, the same signature
        path.replace(token, "https:evil.example"),  # a URL where a token goes
        path.replace(token, open_token(delivery.id)),  # a genuine token, for the pixel
    ]

    for link in forged:
        response = Client().get(link)
        assert response.status_code == 400, link
        assert "This link is not valid" in response.content.decode()
    assert Client().get(path.replace(token, "https://evil.example/")).status_code == 404  # no such path
    assert not DeliveryEvent.objects.filter(delivery=delivery, status="clicked").exists()


def test_no_token_leads_anywhere_but_a_web_link_of_the_email(sent):
    delivery, _ = sent
    # Signed by us, but for links that are not web links of this email: mailto:, the anchor, none at all.
    for index in (1, 2, 99):
        response = Client().get(f"/api/v1/t/c/{click_token(delivery.id, index)}")
        assert response.status_code == 404
    # Whatever else the request says, the target is the stored email's.
    response = Client().get(f"/api/v1/t/c/{click_token(delivery.id, 0)}", {"url": "https://evil.example/"})
    assert response["Location"] == SALE_URL


def test_a_click_on_a_deleted_delivery_is_a_404_page(sent):
    delivery, html = sent
    Delivery.objects.filter(id=delivery.id).delete()

    response = Client().get(click_paths(html)[0])

    assert response.status_code == 404
    assert "This link has expired" in response.content.decode()


def test_a_click_is_redirected_even_when_it_cannot_be_recorded(sent, monkeypatch):
    _, html = sent

    def database_down(events):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(tracking_views, "delivery_events_apply", database_down)

    response = Client().get(click_paths(html)[0])

    assert response.status_code == 302 and response["Location"] == SALE_URL


# --- the open pixel ------------------------------------------------------------------------------------

def test_the_pixel_is_a_transparent_gif_never_cached_and_records_the_open_once(sent):
    delivery, html = sent
    [pixel] = PIXEL.findall(html)

    response = Client().get(pixel, HTTP_USER_AGENT="GoogleImageProxy")
    Client().get(pixel)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    gif = response.content
    assert gif[:6] == b"GIF89a" and gif[6:10] == b"\x01\x00\x01\x00"  # 1 x 1
    extension = gif.index(b"\x21\xf9\x04")  # the graphic control extension: its transparency flag is set
    assert gif[extension + 3] & 1 == 1 and gif[-1:] == b";"
    assert "no-store" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    delivery.refresh_from_db()
    assert delivery.status == "opened" and delivery.opened_at
    [event] = DeliveryEvent.objects.filter(delivery=delivery, status="opened")
    assert event.source == "pixel" and event.payload == {"user_agent": "GoogleImageProxy"}


def test_an_open_after_a_click_changes_nothing(sent):
    delivery, html = sent
    Client().get(click_paths(html)[0])

    Client().get(PIXEL.findall(html)[0])

    delivery.refresh_from_db()
    assert delivery.status == "clicked"


def test_the_pixel_costs_a_few_queries(sent, django_assert_max_num_queries):
    _, html = sent
    [pixel] = PIXEL.findall(html)

    with django_assert_max_num_queries(5):
        assert Client().get(pixel).status_code == 200


def test_a_tampered_pixel_token_is_a_400(sent):
    delivery, html = sent
    [pixel] = PIXEL.findall(html)

    for path in (pixel.replace(".gif", "x.gif"), f"/api/v1/t/o/{click_token(delivery.id, 0)}.gif"):
        assert Client().get(path).status_code == 400
    assert not DeliveryEvent.objects.filter(delivery=delivery, status="opened").exists()


def test_the_pixel_of_a_deleted_delivery_is_still_a_gif(sent):
    delivery, html = sent
    Delivery.objects.filter(id=delivery.id).delete()

    response = Client().get(PIXEL.findall(html)[0])

    assert response.status_code == 200 and response["Content-Type"] == "image/gif"


def test_the_pixel_is_served_even_when_the_open_cannot_be_recorded(sent, monkeypatch):
    _, html = sent

    def database_down(events):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(tracking_views, "delivery_events_apply", database_down)

    assert Client().get(PIXEL.findall(html)[0]).status_code == 200


# --- the setting in the types API ----------------------------------------------------------------------

def test_the_types_api_takes_and_shows_the_tracking_setting(admin_api):
    response = admin_api.post("/api/v1/notification-types", {
        "key": "password_reset", "category": "transactional", "default_channels": ["email"],
        "track_engagement": "off"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["track_engagement"] == "off"
    assert NotificationType.objects.get(key="password_reset").track_engagement == "off"


def test_the_types_api_refuses_an_unknown_tracking_setting_naming_the_field(admin_api):
    response = admin_api.post("/api/v1/notification-types", {
        "key": "promo", "category": "marketing", "default_channels": ["email"], "track_engagement": "sometimes"},
        format="json")

    assert response.status_code == 400
    assert "track_engagement" in response.json()["error"]["fields"]


def test_text_that_only_looks_like_an_href_is_no_link():
    """User data in another attribute (or a comment) must not become a tracked 'link' the redirect serves."""
    from notifier.tracking import email_links

    html = ('<a title=" href=https://evil.example/x" href="https://shop.example/">Shop</a>'
            '<!-- <a href="https://evil.example/comment"> --><p>href="https://evil.example/text"</p>')

    assert email_links(html) == ["https://shop.example/"]
    tracked = tracked_html(html, 7)
    assert tracked.count("/api/v1/t/c/") == 1 and 'title=" href=https://evil.example/x"' in tracked
    assert "evil.example/comment" in tracked  # the comment is left as it was


def test_opens_and_forged_tokens_are_counted_on_metrics(sent, django_capture_on_commit_callbacks):
    from notifier.metrics import PROCESS_METRICS

    def count(result):
        return PROCESS_METRICS.get_sample_value("notifier_webhook_events_total",
                                                {"source": "pixel", "result": result}) or 0.0

    delivery, html = sent
    [pixel] = PIXEL.findall(html)
    before = count("applied"), count("ignored"), count("forged")
    with django_capture_on_commit_callbacks(execute=True):
        Client().get(pixel)
        Client().get(pixel)  # the second open changes nothing
        Client().get("/api/v1/t/o/forged.gif")

    assert (count("applied"), count("ignored"), count("forged")) == (before[0] + 1, before[1] + 1, before[2] + 1)
