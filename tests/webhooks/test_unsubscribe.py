"""One-click unsubscribe (RFC 8058) at /api/v1/unsubscribe/<token>: the link every marketing email carries
in its body and in List-Unsubscribe. POST unsubscribes (no cookie, no CSRF token, idempotent); GET only
asks; a bad token is a 400 page."""
import pytest
from django.core import signing
from django.test import Client

from notifier.models import Delivery, Notification, Recipient, SandboxMessage, Unsubscription
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.render import unsubscribe_url
from notifier.pipeline.route import route_due
from tests.conftest import make_order_type, make_reachable_user
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketing_type(db):
    return make_order_type("spring_sale", channels=("email",), category="marketing")


@pytest.fixture
def subscriber(db):
    recipient = make_reachable_user("u_7", devices=())
    recipient.marketing_opt_in = True
    recipient.save()
    return recipient


@pytest.fixture
def mail_client():
    """A mailbox provider's one-click POST: no session, no CSRF cookie, and CSRF checks on."""
    return Client(enforce_csrf_checks=True)


def path_of(url: str) -> str:
    return url[url.index("/api/v1/"):]


def sent_unsubscribe_link(marketing_type, subscriber) -> str:
    """The List-Unsubscribe link of a marketing email really sent (through the sandbox) to the subscriber."""
    make_notification(marketing_type, subscriber)
    route_due("high")
    deliver_due("email", "high")
    message = SandboxMessage.objects.filter(channel="email").latest("id").message
    link = message["headers"]["List-Unsubscribe"].strip("<>")
    assert link in message["body"] and link in message["html_body"]
    return path_of(link)


def test_a_one_click_post_without_cookies_or_csrf_token_unsubscribes_and_says_so(
        marketing_type, subscriber, mail_client):
    link = sent_unsubscribe_link(marketing_type, subscriber)

    response = mail_client.post(link, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "You are unsubscribed from marketing email" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.type_preferences["marketing"] == {"email": False}
    record = Unsubscription.objects.get(recipient=subscriber)
    assert (record.category, record.channel, record.source, record.type_key) == ("marketing", "email", "link",
                                                                                 "spring_sale")
    assert record.notification_id == Notification.objects.get().id  # the email the link came in


def test_an_empty_post_unsubscribes_too(marketing_type, subscriber, mail_client):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))

    assert mail_client.post(link).status_code == 200

    assert Unsubscription.objects.filter(recipient=subscriber, category="marketing").count() == 1


def test_posting_twice_is_the_same_as_once(marketing_type, subscriber, mail_client):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))

    first = mail_client.post(link, {"List-Unsubscribe": "One-Click"})
    second = mail_client.post(link, {"List-Unsubscribe": "One-Click"})

    assert first.status_code == second.status_code == 200
    assert "You are unsubscribed from marketing email" in second.content.decode()
    assert Unsubscription.objects.filter(recipient=subscriber).count() == 1


def test_a_get_shows_a_button_that_posts_to_the_same_link_and_changes_nothing(marketing_type, subscriber):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))

    response = Client().get(link)

    page = response.content.decode()
    assert response.status_code == 200
    assert f'<form method="post" action="{link}">' in page
    assert '<button type="submit">Unsubscribe</button>' in page
    assert "Unsubscribe from marketing email?" in page
    subscriber.refresh_from_db()
    assert subscriber.type_preferences == {}
    assert not Unsubscription.objects.exists()


def test_the_pages_load_nothing_from_elsewhere(marketing_type, subscriber):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))

    for page in (Client().get(link).content.decode(), Client().post(link).content.decode()):
        assert "<link" not in page and "<script" not in page and "src=" not in page
        assert '<html lang="en">' in page


def test_the_next_marketing_email_to_that_user_is_not_sent(marketing_type, subscriber, mail_client):
    link = sent_unsubscribe_link(marketing_type, subscriber)
    mail_client.post(link, {"List-Unsubscribe": "One-Click"})

    after = make_notification(marketing_type, subscriber)
    route_due("high")

    after.refresh_from_db()
    assert not Delivery.objects.filter(notification=after).exists()
    assert after.decisions == [{"channel": "email", "decision": "suppressed",
                                "reason": "category opted out (marketing on email)"}]


def test_transactional_email_still_goes_to_a_user_who_unsubscribed_from_marketing(
        marketing_type, subscriber, mail_client, order_type):
    mail_client.post(path_of(unsubscribe_url("u_7", "spring_sale")))

    receipt = make_notification(order_type, subscriber)
    route_due("high")

    assert Delivery.objects.filter(notification=receipt, channel="email").exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_is_a_400_page_and_changes_nothing(marketing_type, subscriber, method):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")

    response = getattr(Client(enforce_csrf_checks=True), method)(tampered)

    assert response.status_code == 400
    assert "This unsubscribe link is not valid" in response.content.decode()
    assert not Unsubscription.objects.exists()


def test_a_token_signed_for_something_else_is_refused(marketing_type, subscriber):
    # A recipient token's payload has the same shape, but another salt: it must not unsubscribe anyone.
    forged = signing.dumps({"u": "u_7", "t": "spring_sale"}, salt="notifier.recipient-token", compress=True)

    assert Client().post(f"/api/v1/unsubscribe/{forged}").status_code == 400
    assert not Unsubscription.objects.exists()


def test_a_link_of_a_deleted_user_is_a_404_page(marketing_type, subscriber):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))
    Recipient.objects.filter(id=subscriber.id).delete()

    response = Client().post(link)

    assert response.status_code == 404
    assert "No subscription found" in response.content.decode()


def test_a_link_sent_before_it_carried_the_notification_id_still_works(marketing_type, subscriber):
    old = signing.dumps({"u": "u_7", "t": "spring_sale"}, salt="notifier.unsubscribe", compress=True)

    response = Client().post(f"/api/v1/unsubscribe/{old}")

    assert response.status_code == 200
    record = Unsubscription.objects.get(recipient=subscriber)
    assert (record.category, record.notification_id) == ("marketing", None)


def test_a_link_of_a_deleted_type_unsubscribes_from_that_type(marketing_type, subscriber):
    link = path_of(unsubscribe_url("u_7", "gone_type"))

    response = Client().post(link)

    assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.type_preferences == {"gone_type": {"email": False}}


def test_a_link_of_a_type_made_transactional_since_mutes_that_type_alone(marketing_type, subscriber, order_type):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))
    marketing_type.category = "transactional"
    marketing_type.save()

    response = Client().post(link)

    assert "You are unsubscribed from spring_sale email" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.type_preferences == {"spring_sale": {"email": False}}  # not every transactional email


def test_other_methods_are_refused(marketing_type, subscriber):
    link = path_of(unsubscribe_url("u_7", "spring_sale"))

    assert Client().put(link).status_code == 405
    assert not Unsubscription.objects.exists()
