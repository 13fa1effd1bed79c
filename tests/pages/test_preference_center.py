"""The hosted preference center, through Django's test client: the page shows every switch as the route
step will decide it, saves through the preferences API's rules, and answers a clear page, never a 500, to
a bad link or bad input."""
import re
import time

import pytest
from django.test import Client

from notifier.models import NotificationType, Recipient
from notifier.pipeline.preferences import channel_verdict
from notifier.preference_center import preference_center_document, preference_center_view
from notifier.preference_links import preferences_link_issue, preferences_link_read
from tests.conftest import make_order_type

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return url.split("127.0.0.1:8000", 1)[-1]


@pytest.fixture
def types(db):
    order = make_order_type(name="Order shipped")
    security = make_order_type(key="security_alert", name="Security alert", channels=("email", "sms"), critical=True)
    promo = make_order_type(key="weekly_offers", name="Weekly offers", channels=("email",), category="marketing")
    return order, security, promo


def page_form(html: str) -> dict:
    """What a browser would post from the page as it is: every named field's current value."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or "disabled" in tag:
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                fields[name[1]] = "on"
        else:
            fields[name[1]] = re.search(r'value="([^"]*)"', tag)[1]
    for name, options in re.findall(r'<select id="[^"]+" name="([^"]+)">(.*?)</select>', html, re.S):
        fields[name] = re.search(r'<option value="([^"]+)" selected', options)[1]
    return fields


def test_a_minted_link_opens_only_its_users_page_until_it_expires():
    url, expires_at = preferences_link_issue("u_42", 60, now=1_000_000)

    assert preferences_link_read(url.rsplit("/", 1)[1], now=1_000_059) == "u_42"
    assert expires_at.timestamp() == 1_000_060
    with pytest.raises(Exception) as expired:
        preferences_link_read(url.rsplit("/", 1)[1], now=1_000_060)
    assert expired.value.expired is True


def test_the_page_shows_each_type_and_channel_as_the_route_step_decides_it(types):
    order, security, promo = types
    Recipient.objects.create(user_id="u_1", channel_preferences={"sms": False},
                             type_preferences={"order_shipped": {"sms": True}, "transactional": {"email": False}})
    url, _ = preferences_link_issue("u_1")

    response = Client().get(path_of(url))

    html = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"].startswith("no-store")
    view = preference_center_view(preference_center_document(Recipient.objects.get(user_id="u_1")))
    shown = {s.name: s.on for section in view["sections"] for row in section.rows for s in row.switches}
    recipient = Recipient.objects.get(user_id="u_1")
    for notification_type in (order, promo):
        for channel in notification_type.default_channels:
            verdict = channel_verdict(recipient, notification_type, channel)
            expected = verdict.allowed or verdict.reason == "marketing not opted in"
            assert shown[f"type.{notification_type.key}.{channel}"] == expected, (notification_type, channel)
    assert 'name="type.order_shipped.sms" data-switch="type.order_shipped.sms" data-parent="category.transactional.sms" checked' in html
    assert 'name="type.order_shipped.email" data-switch="type.order_shipped.email" data-parent="category.transactional.email" >' in html
    assert "Security alert" in html and "Always on: this is a critical notification" in html
    assert 'name="type.security_alert.email"' not in html  # shown as a disabled "always on" switch, never posted
    assert '<option value="UTC" selected>' in html


def test_saving_the_form_without_javascript_stores_only_what_differs_from_what_it_inherits(types):
    url, _ = preferences_link_issue("u_2")
    client = Client(enforce_csrf_checks=True)
    form = page_form(client.get(path_of(url)).content.decode())
    del form["type.order_shipped.sms"]  # switched off
    form.update({"quiet_hours": "on", "quiet_start": "21:30", "quiet_end": "06:45", "timezone": "Asia/Tokyo",
                 "digest": "daily", "marketing_opt_in": "on"})

    response = client.post(path_of(url), form)

    assert response.status_code == 303 and response["Location"].endswith("?saved=1")
    recipient = Recipient.objects.get(user_id="u_2")
    assert recipient.type_preferences == {"order_shipped": {"sms": False}}
    assert recipient.channel_preferences == {"push": True, "email": True, "sms": True, "in_app": True}
    assert (str(recipient.quiet_hours_start), str(recipient.quiet_hours_end), recipient.timezone) == (
        "21:30:00", "06:45:00", "Asia/Tokyo")
    assert recipient.digest == "daily" and recipient.marketing_opt_in is True
    assert not channel_verdict(recipient, NotificationType.objects.get(key="order_shipped"), "sms").allowed
    assert "Your preferences are saved." in client.get(response["Location"]).content.decode()


def test_a_category_switch_governs_its_types_and_a_type_set_apart_keeps_its_own_choice(types):
    url, _ = preferences_link_issue("u_3")
    client = Client()
    form = page_form(client.get(path_of(url)).content.decode())
    del form["category.transactional.push"]  # the category off (the page's script would move its types too)
    del form["type.order_shipped.push"]

    client.post(path_of(url), form)
    form = page_form(client.get(path_of(url)).content.decode())
    form["type.order_shipped.push"] = "on"  # one type back on
    client.post(path_of(url), form)

    assert Recipient.objects.get(user_id="u_3").type_preferences == {
        "transactional": {"push": False}, "order_shipped": {"push": True}}


def test_the_form_needs_its_csrf_token(types):
    url, _ = preferences_link_issue("u_4")

    response = Client(enforce_csrf_checks=True).post(path_of(url), {"switches": "channel.sms"})

    assert response.status_code == 403
    assert not Recipient.objects.filter(user_id="u_4").exists()


@pytest.mark.parametrize("changes, field, message", [
    ({"quiet_hours": "on", "timezone": "Mars/Olympus"}, "Time zone", "is not an IANA time zone"),
    ({"quiet_hours": "on", "quiet_start": "25:00"}, "Quiet hours from", "HH:MM"),
    ({"language": "not a language"}, "Language", "is not a language tag"),
    ({"digest": "weekly"}, "Bundle notifications", "Choose from"),
    ({"digest": "daily\x00"}, "digest", "NUL"),
])
def test_a_bad_value_is_a_page_naming_it_and_nothing_is_saved(types, changes, field, message):
    Recipient.objects.create(user_id="u_5", digest="hourly")
    url, _ = preferences_link_issue("u_5")
    client = Client()
    form = {**page_form(client.get(path_of(url)).content.decode()), **changes}

    response = client.post(path_of(url), form)

    html = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was saved." in html and field in html and message in html
    assert Recipient.objects.get(user_id="u_5").digest == "hourly"


@pytest.mark.parametrize("token, status, heading", [
    ("nonsense", 400, "This link is not valid"),
    ("eyJ1IjoidV80MiIsIngiOjl9:forged", 400, "This link is not valid"),
    ("%00", 400, "This link is not valid"),
    (None, 410, "This link has expired"),
])
def test_a_bad_or_expired_link_is_a_clear_page_not_a_500(token, status, heading):
    if token is None:
        url, _ = preferences_link_issue("u_6", 60, now=time.time() - 120)
        token = url.rsplit("/", 1)[1]

    for method in ("get", "post"):
        response = getattr(Client(), method)(f"/preferences/{token}")
        assert response.status_code == status
        assert heading in response.content.decode()


def test_a_recipient_token_does_not_open_the_preference_center(api):
    token = api.post("/api/v1/users/u_7/token").json()["token"]

    assert Client().get(f"/preferences/{token}").status_code == 400
    assert Client().get(f"/preferences/{token.removeprefix('rt_')}").status_code == 400


def test_the_unsubscribe_pages_link_to_the_users_preference_center(types):
    from notifier.pipeline.render import unsubscribe_url

    Recipient.objects.create(user_id="u_8", email="u8@example.com")
    path = path_of(unsubscribe_url("u_8", "weekly_offers"))

    for response in (Client().get(path), Client().post(path, {"List-Unsubscribe": "One-Click"})):
        page = response.content.decode()
        link = re.search(r'<a href="(http://127\.0\.0\.1:8000/preferences/[^"]+)">Choose what else you receive', page)[1]
        assert preferences_link_read(link.rsplit("/", 1)[1]) == "u_8"


@pytest.mark.parametrize("accent, text", [("#1f6feb", "#ffffff"), ("#ffd33d", "#000000"), ("#fff", "#000000"),
                                          ("#0f766e", "#ffffff")])
def test_the_brand_accent_gets_the_readable_text_colour(settings, accent, text):
    from notifier.pages import brand

    settings.NOTIFIER_BRAND_ACCENT_COLOR = accent

    assert brand()["brand_on_accent"] == text


def test_the_page_wears_the_brand(types, settings):
    settings.NOTIFIER_BRAND_NAME = "Acme <Shop>"
    settings.NOTIFIER_BRAND_LOGO_URL = "https://acme.example/logo.png"
    settings.NOTIFIER_BRAND_ACCENT_COLOR = "#0f766e"
    url, _ = preferences_link_issue("u_9")

    html = Client().get(path_of(url)).content.decode()

    assert "Acme &lt;Shop&gt;" in html and '<img src="https://acme.example/logo.png" alt="">' in html
    assert "--accent: #0f766e; --on-accent: #ffffff;" in html
