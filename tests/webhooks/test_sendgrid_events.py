"""SendGrid's Event Webhook: signed by the fake SendGrid with a real ECDSA P-256 key and verified by the SDK's
EventWebhook helper, as in production; events applied to the deliveries they name through the status machine.

The emails are sent for real first: through the SendGrid adapter to the fake SendGrid API, which remembers
the X-Message-Id it answered and the custom args it was given, and builds SendGrid's events from them."""
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from sendgrid.helpers.eventwebhook import EventWebhook

from notifier.models import (
    Delivery,
    DeliveryEvent,
    EmailSuppression,
    Recipient,
    Unsubscription,
    WebhookEventSeen,
)
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.replay import dead_letters_replay
from notifier.pipeline.route import route_due
from notifier.pipeline.sweep import sweep
from notifier.webhooks.sendgrid import EVENTS_PATH, MAX_CLOCK_SKEW_SECONDS
from tests.conftest import make_order_type, make_reachable_user
from tests.fakes.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid, sign, signing_key_new
from tests.pipeline.test_route import make_notification
from tests.support.dead_letters import make_dead_letters, use_scripted_providers

pytestmark = pytest.mark.django_db

API_KEY = "SG.webhook-tests"


@pytest.fixture(scope="module")
def fake_sendgrid():
    with FakeSendGrid(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def fake(fake_sendgrid):
    fake_sendgrid.clear()
    return fake_sendgrid


def sendgrid_configure(settings, fake):
    """Email through the SendGrid adapter to `fake`, whose signed events the webhook verifies."""
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["sandbox"], "email": ["sendgrid"], "sms": ["sandbox"]}
    settings.NOTIFIER_PROVIDER_CONFIG = {"sendgrid": {
        "api_key": API_KEY, "from_email": "shop@example.com", "host": fake.url, "timeout": 2,
        "webhook_public_key": fake.public_key,
    }}
    return settings


@pytest.fixture
def sendgrid_settings(settings, fake):
    return sendgrid_configure(settings, fake)


def email_send(notification_type, recipient):
    """Route and send one email notification through the SendGrid adapter; returns its delivery, sent."""
    notification = make_notification(notification_type, recipient, channels=["email"])
    route_due("high")
    deliver_due("email", "high")
    delivery = Delivery.objects.get(notification=notification, channel="email")
    assert delivery.status == "sent" and delivery.provider == "sendgrid" and delivery.provider_message_id
    return delivery


@pytest.fixture
def sent_email(sendgrid_settings, order_type, reachable_user):
    return email_send(order_type, reachable_user)


@pytest.fixture
def mail(fake, sent_email):
    """What the fake SendGrid accepted for the sent email: what its events are about."""
    [mail] = fake.accepted_for(sent_email.id)
    assert mail.message_id == sent_email.provider_message_id
    return mail


def post(client, body, headers):
    """POST a body with SendGrid's headers through Django's test client (the real view and middleware)."""
    return client.post(EVENTS_PATH, body, content_type=headers.pop("Content-Type", "application/json"),
                       headers=headers)


def post_events(client, fake, events, **signing):
    return post(client, *fake.signed(events, **signing))


def history(delivery):
    """What SendGrid's events recorded for the delivery, in the order they happened."""
    return [(e.status, e.source, e.applied)
            for e in DeliveryEvent.objects.filter(delivery=delivery, source="sendgrid").order_by("at", "id")]


# --- delivered, open, click


def test_delivered_open_and_click_are_the_deliverys_history_and_it_ends_clicked(client, fake, sent_email, mail):
    now = int(time.time())
    events = [fake.event(mail, "processed", timestamp=now - 3), fake.event(mail, "delivered", timestamp=now - 2),
              fake.event(mail, "open", timestamp=now - 1),
              fake.event(mail, "click", timestamp=now, url="https://shop.example/orders/42")]

    response = post_events(client, fake, events)

    assert response.status_code == 200
    assert response.json() == {"received": 4, "applied": 3, "duplicates": 0, "unmatched": 0, "ignored": 1}
    sent_email.refresh_from_db()
    assert sent_email.status == "clicked"
    assert sent_email.delivered_at.timestamp() == now - 2 and sent_email.clicked_at.timestamp() == now
    assert history(sent_email) == [("delivered", "sendgrid", True), ("opened", "sendgrid", True),
                                   ("clicked", "sendgrid", True)]
    click = DeliveryEvent.objects.get(delivery=sent_email, status="clicked")
    assert click.payload["url"] == "https://shop.example/orders/42"
    assert click.payload["sg_event_id"] == events[3]["sg_event_id"]


def test_the_notifications_api_shows_the_sendgrid_events(client, api, fake, sent_email, mail):
    post_events(client, fake, [fake.event(mail, "delivered"), fake.event(mail, "open")])

    body = api.get(f"/api/v1/notifications/{sent_email.notification_id}").json()

    [delivery] = body["deliveries"]
    assert delivery["status"] == "opened"


def test_a_late_delivered_after_the_click_is_history_and_changes_nothing(client, fake, sent_email, mail):
    now = int(time.time())
    post_events(client, fake, [fake.event(mail, "click", timestamp=now - 10)])

    assert post_events(client, fake, [fake.event(mail, "bounce", type="blocked", timestamp=now)]).status_code == 200

    sent_email.refresh_from_db()
    assert sent_email.status == "clicked"
    assert ("failed", "sendgrid", False) in history(sent_email)


@pytest.mark.parametrize("kind", ["processed", "deferred", "group_resubscribe", "a_future_event_kind"])
def test_events_that_change_nothing_are_accepted_and_ignored(client, fake, sent_email, mail, kind):
    response = post_events(client, fake, [fake.event(mail, kind)])

    assert response.status_code == 200 and response.json()["ignored"] == 1
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"
    assert not DeliveryEvent.objects.filter(delivery=sent_email, source="sendgrid").exists()


def test_without_custom_args_the_event_finds_its_delivery_by_the_message_id(client, fake, sent_email, mail):
    event = fake.event(mail, "delivered", custom_args=False)
    assert "delivery_id" not in event and event["sg_message_id"].startswith(mail.message_id + ".")

    assert post_events(client, fake, [event]).json()["applied"] == 1

    sent_email.refresh_from_db()
    assert sent_email.status == "delivered"


def test_an_event_for_a_message_notifier_did_not_send_is_acknowledged_and_changes_nothing(client, fake, sent_email,
                                                                                         mail):
    event = fake.event(mail, "delivered", custom_args=False, sg_message_id="someone-elses-message.filter.0")

    response = post_events(client, fake, [event])

    assert response.status_code == 200 and response.json()["unmatched"] == 1
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"


# --- bounces and drops


def test_a_hard_bounce_bounces_the_delivery_and_the_next_email_to_the_address_is_not_sent(
        client, api, fake, sent_email, mail, order_type, reachable_user):
    post_events(client, fake, [fake.event(mail, "bounce")])

    sent_email.refresh_from_db()
    assert sent_email.status == "bounced" and sent_email.failed_at is not None
    assert "5.1.1" in sent_email.last_error and "does not exist" in sent_email.last_error
    suppression = EmailSuppression.objects.get(address="u_42@example.com")
    assert suppression.reason == "hard_bounce" and suppression.delivery_id == sent_email.id

    # when the next email is routed to the same address
    fake.clear()
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    deliver_due("email", "high")

    # then it is not sent, and the decision says why
    notification.refresh_from_db()
    [decision] = notification.decisions
    assert decision["decision"] == "skipped"
    assert decision["reason"] == f"email address suppressed: hard bounce on {suppression.created_at:%Y-%m-%d}"
    assert not notification.deliveries.exists() and fake.requests == []
    # and the user's page in the API shows it
    user = api.get("/api/v1/users/u_42").json()
    assert user["email_suppressed"]["reason"] == "hard_bounce"
    assert "does not exist" in user["email_suppressed"]["detail"]


def test_a_suppressed_address_falls_back_to_the_next_channel(client, fake, sent_email, mail, order_type,
                                                            reachable_user):
    post_events(client, fake, [fake.event(mail, "bounce")])

    notification = make_notification(order_type, reachable_user, channels=["email"], fallback_channels=["sms"])
    route_due("high")

    assert [d.channel for d in notification.deliveries.all()] == ["sms"]


def test_a_suppression_covers_the_address_whatever_its_case(client, fake, sent_email, mail, order_type):
    post_events(client, fake, [fake.event(mail, "bounce", email="U_42@Example.COM")])
    shouty = Recipient.objects.create(user_id="u_43", email="U_42@EXAMPLE.com")

    notification = make_notification(order_type, shouty, channels=["email"])
    route_due("high")

    notification.refresh_from_db()
    assert notification.decisions[0]["reason"].startswith("email address suppressed: hard bounce")


def test_a_blocked_bounce_fails_the_delivery_but_keeps_the_address(client, fake, sent_email, mail):
    post_events(client, fake, [fake.event(mail, "bounce", type="blocked", status="5.7.1",
                                          reason="550 5.7.1 Message rejected as spam")])

    sent_email.refresh_from_db()
    assert sent_email.status == "failed"
    assert sent_email.last_error == "sendgrid blocked: 5.7.1 550 5.7.1 Message rejected as spam"
    assert not EmailSuppression.objects.exists()


@pytest.mark.parametrize(("reason", "suppressed"), [("Bounced Address", True), ("Invalid", True),
                                                    ("Unsubscribed Address", False),
                                                    ("Invalid SMTPAPI header", False)])
def test_a_dropped_message_fails_and_a_dead_address_is_suppressed(client, fake, sent_email, mail, reason, suppressed):
    post_events(client, fake, [fake.event(mail, "dropped", reason=reason)])

    sent_email.refresh_from_db()
    assert sent_email.status == "failed" and reason in sent_email.last_error
    assert EmailSuppression.objects.filter(address="u_42@example.com", reason="invalid_address").exists() == suppressed


def test_the_route_step_reads_suppressions_once_per_batch(client, sendgrid_settings, order_type):
    users = [make_reachable_user(f"u_{n}", devices=()) for n in range(6)]
    EmailSuppression.objects.create(address="u_1@example.com", reason="hard_bounce")
    EmailSuppression.objects.create(address="u_4@example.com", reason="hard_bounce")
    for user in users:
        make_notification(order_type, user, channels=["email"])

    with CaptureQueriesContext(connection) as queries:
        route_due("high")

    assert sum("notifier_emailsuppression" in q["sql"] for q in queries.captured_queries) == 1
    assert sorted(Delivery.objects.values_list("target", flat=True)) == [
        f"u_{n}@example.com" for n in (0, 2, 3, 5)]


# --- unsubscribes and spam reports


@pytest.fixture
def marketing_email(sendgrid_settings, fake, reachable_user):
    reachable_user.marketing_opt_in = True
    reachable_user.save()
    deals = make_order_type("weekly_deals", channels=("email",), category="marketing", default_priority="high")
    delivery = email_send(deals, reachable_user)
    [mail] = fake.accepted_for(delivery.id)
    return delivery, mail


@pytest.mark.parametrize("kind", ["unsubscribe", "spamreport", "group_unsubscribe"])
def test_an_unsubscribe_or_spam_report_opts_the_user_out_of_the_category_for_email(client, fake, marketing_email,
                                                                                  reachable_user, kind):
    delivery, mail = marketing_email

    response = post_events(client, fake, [fake.event(mail, kind)])

    assert response.status_code == 200 and response.json()["applied"] == 1
    [unsubscription] = Unsubscription.objects.filter(recipient=reachable_user)
    assert (unsubscription.category, unsubscription.channel, unsubscription.type_key, unsubscription.source) == (
        "marketing", "email", "weekly_deals", f"sendgrid {kind}")
    assert unsubscription.notification_id == delivery.notification_id
    reachable_user.refresh_from_db()
    assert reachable_user.type_preferences["marketing"]["email"] is False

    # the next marketing email is not sent
    notification = make_notification(delivery.notification.type, reachable_user, channels=["email"])
    route_due("high")
    notification.refresh_from_db()
    assert notification.decisions[0]["decision"] == "suppressed"


# --- repeats


def test_a_request_that_failed_may_be_posted_again_with_the_same_signature(client, fake, sent_email, mail,
                                                                            monkeypatch):
    """A post we answered with an error was rolled back whole, its signature too: SendGrid's retry of it
    is applied."""
    from notifier.webhooks import sendgrid as view

    body, headers = fake.signed([fake.event(mail, "delivered")])
    monkeypatch.setattr(view, "delivery_events_apply", lambda events: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        post(client, body, dict(headers))
    monkeypatch.undo()

    assert post(client, body, dict(headers)).json()["applied"] == 1


def test_a_repeated_event_is_accepted_and_recorded_once(client, fake, sent_email, mail):
    delivered = fake.event(mail, "delivered")
    assert post_events(client, fake, [delivered]).status_code == 200

    response = post_events(client, fake, [delivered, fake.event(mail, "open")])

    assert response.status_code == 200
    assert response.json() == {"received": 2, "applied": 1, "duplicates": 1, "unmatched": 0, "ignored": 0}
    assert [s for s, source, _ in history(sent_email) if source == "sendgrid"] == ["delivered", "opened"]


def test_the_same_signed_request_posted_again_is_a_replay_refused_with_403(client, fake, marketing_email):
    delivery, mail = marketing_email
    body, headers = fake.signed([fake.event(mail, "unsubscribe"), fake.event(mail, "bounce")])

    first = post(client, body, dict(headers))
    second = post(client, body, dict(headers))  # within the 5 minutes: a captured request sent again

    assert first.json()["applied"] == 2
    assert second.status_code == 403 and "seen before" in second.json()["error"]["message"]
    assert Unsubscription.objects.count() == 1 and EmailSuppression.objects.count() == 1
    assert DeliveryEvent.objects.filter(delivery=delivery, source="sendgrid").count() == 1


def test_one_event_twice_in_one_batch_counts_once(client, fake, sent_email, mail):
    click = fake.event(mail, "click")

    assert post_events(client, fake, [click, click]).json()["duplicates"] == 1
    assert DeliveryEvent.objects.filter(delivery=sent_email, source="sendgrid").count() == 1


def test_the_sweeper_forgets_event_ids_after_the_retention(settings, client, fake, sent_email, mail):
    post_events(client, fake, [fake.event(mail, "delivered"), fake.event(mail, "open")])
    WebhookEventSeen.objects.filter(id=WebhookEventSeen.objects.first().id).update(
        received_at=timezone.now() - timedelta(days=settings.NOTIFIER_WEBHOOK_EVENT_RETENTION_DAYS, hours=1))

    assert sweep()["webhook_events_forgotten"] == 1
    assert WebhookEventSeen.objects.count() == 2  # the other event, and the post's signature


@pytest.mark.parametrize("count", [1, 8])
def test_a_batch_of_events_costs_a_fixed_number_of_queries(client, fake, sendgrid_settings, order_type, count,
                                                           django_assert_num_queries):
    users = [make_reachable_user(f"u_{n}", devices=()) for n in range(count)]
    deliveries = [email_send(order_type, user) for user in users]
    events = [fake.event(mail, kind) for d in deliveries for mail in fake.accepted_for(d.id)
              for kind in ("delivered", "open", "click", "bounce")]

    # The post's signature and the seen ids, deliveries, the status machine's reads and writes,
    # suppressions, reopening and closing the notifications, within a savepoint: the same for 4 events or 32.
    with django_assert_num_queries(15):
        response = post_events(client, fake, events)

    assert response.json()["applied"] == 4 * count
    assert set(Delivery.objects.values_list("status", flat=True)) == {"bounced"}
    assert EmailSuppression.objects.count() == count


# --- forged, stale and replayed posts


def nothing_changed(delivery):
    delivery.refresh_from_db()
    return (delivery.status == "sent" and not DeliveryEvent.objects.filter(delivery=delivery, source="sendgrid").exists()
            and not WebhookEventSeen.objects.exists() and not EmailSuppression.objects.exists())


def forged(fake, mail, how):
    now = str(int(time.time()))
    body, headers = fake.signed([fake.event(mail, "bounce")])
    if how == "another key":
        body, headers = fake.signed([fake.event(mail, "bounce")], key=signing_key_new())
    elif how == "body changed after signing":
        body = body.replace(b'"bounce"', b'"dropped"', 1)
    elif how == "timestamp changed after signing":
        headers[TIMESTAMP_HEADER] = str(int(now) - 1)
    elif how == "no signature":
        del headers[SIGNATURE_HEADER]
    elif how == "no timestamp":
        del headers[TIMESTAMP_HEADER]
    elif how == "signature not base64":
        headers[SIGNATURE_HEADER] = "not base64 at all!"
    elif how == "signature of something else":
        headers[SIGNATURE_HEADER] = sign(fake.signing_key, now, b"[]")
    elif how == "stale":  # signed correctly, six minutes ago: a captured request replayed
        body, headers = fake.signed([fake.event(mail, "bounce")], timestamp=str(int(now) - MAX_CLOCK_SKEW_SECONDS - 60))
    elif how == "from the future":
        body, headers = fake.signed([fake.event(mail, "bounce")], timestamp=str(int(now) + MAX_CLOCK_SKEW_SECONDS + 60))
    elif how == "timestamp not a number":
        body, headers = fake.signed([fake.event(mail, "bounce")], timestamp=f"{now}.5")
    return body, headers


FORGERIES = ["another key", "body changed after signing", "timestamp changed after signing", "no signature",
             "no timestamp", "signature not base64", "signature of something else", "stale", "from the future",
             "timestamp not a number"]


@pytest.mark.parametrize("how", FORGERIES)
def test_a_forged_stale_or_replayed_post_is_403_and_changes_nothing(client, fake, sent_email, mail, how):
    response = post(client, *forged(fake, mail, how))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert nothing_changed(sent_email)


@pytest.mark.parametrize("how, result", [("another key", "forged"), ("stale", "stale")])
def test_refused_posts_are_counted_by_why(client, fake, sent_email, mail, how, result,
                                          django_capture_on_commit_callbacks):
    from notifier.metrics import PROCESS_METRICS

    def count():
        return PROCESS_METRICS.get_sample_value("notifier_webhook_events_total",
                                                {"source": "sendgrid", "result": result}) or 0.0

    before = count()
    with django_capture_on_commit_callbacks(execute=True):  # counts are added once the request commits
        post(client, *forged(fake, mail, how))
    assert count() == before + 1


def test_applied_and_repeated_events_are_counted(client, fake, sent_email, mail, django_capture_on_commit_callbacks):
    from notifier.metrics import PROCESS_METRICS

    def count(result):
        return PROCESS_METRICS.get_sample_value("notifier_webhook_events_total",
                                                {"source": "sendgrid", "result": result}) or 0.0

    before = count("applied"), count("duplicate")
    events = [fake.event(mail, "delivered")]
    with django_capture_on_commit_callbacks(execute=True):
        post_events(client, fake, events)
        post_events(client, fake, events)
    assert (count("applied"), count("duplicate")) == (before[0] + 1, before[1] + 1)


def test_a_replay_of_a_real_post_after_five_minutes_is_refused(client, fake, sent_email, mail):
    signed_at = int(time.time()) - MAX_CLOCK_SKEW_SECONDS + 2
    body, headers = fake.signed([fake.event(mail, "bounce")], timestamp=str(signed_at))
    assert post(client, body, dict(headers)).status_code == 200  # the real post, just in time

    time.sleep(3)  # the same bytes, posted again once the window has passed
    assert post(client, body, dict(headers)).status_code == 403


def test_without_a_public_key_configured_every_post_is_refused(client, sendgrid_settings, fake, sent_email, mail):
    del sendgrid_settings.NOTIFIER_PROVIDER_CONFIG["sendgrid"]["webhook_public_key"]

    assert post_events(client, fake, [fake.event(mail, "delivered")]).status_code == 403
    assert nothing_changed(sent_email)


def test_a_public_key_that_cannot_be_read_refuses_every_post(client, sendgrid_settings, fake, sent_email, mail):
    sendgrid_settings.NOTIFIER_PROVIDER_CONFIG["sendgrid"]["webhook_public_key"] = "bm90IGEga2V5"

    assert post_events(client, fake, [fake.event(mail, "delivered")]).status_code == 403
    assert nothing_changed(sent_email)


def test_only_post_is_allowed_and_the_refusal_is_json(client):
    response = client.get(EVENTS_PATH)

    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- bodies


@pytest.mark.parametrize(("body", "field"), [
    (b"[{\"event\": ", "request"),
    (b"{\"event\": \"delivered\"}", "request"),
    (b"[{\"event\": \"delivered\"}, 42]", "[1]"),
    (b"[{\"event\": \"delivered\", \"reason\": \"a\\u0000b\"}]", "[0].reason"),
    (b"[" * 40 + b"]" * 40, "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                             "[0][0][0][0]"),
])
def test_a_signed_body_that_is_not_an_array_of_events_is_400_naming_the_place(client, fake, sent_email, body, field):
    response = post_events(client, fake, body)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert nothing_changed(sent_email)


def test_a_body_that_is_not_utf8_is_refused(client, fake, sent_email):
    assert post_events(client, fake, b"[\xff]").status_code == 403
    assert nothing_changed(sent_email)


@pytest.mark.parametrize("oddity", [
    {"sg_event_id": None}, {"sg_event_id": 7}, {"timestamp": "yesterday"}, {"timestamp": 10 ** 20},
    {"delivery_id": "12; DROP TABLE"}, {"delivery_id": -1}, {"delivery_id": True}, {"sg_message_id": 5},
    {"email": ["a@b"]}, {"reason": {"nested": "x"}}, {"type": None}, {"type": ["bounce"]}, {"event": ["bounce"]},
    {"event": {"kind": "bounce"}}, {"event": None}, {"custom_args": "x", "notification_id": {"a": 1}},
])
def test_odd_field_values_in_a_signed_event_never_cause_a_500(client, fake, sent_email, mail, oddity):
    response = post_events(client, fake, [fake.event(mail, "bounce", **oddity)])

    assert response.status_code == 200


def test_the_fake_signs_exactly_as_the_sdk_verifies(fake):
    body, headers = fake.signed([{"event": "delivered"}])
    helper = EventWebhook(fake.public_key)

    assert helper.verify_signature(body.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    assert not helper.verify_signature(json.dumps([{"event": "open"}]), headers[SIGNATURE_HEADER],
                                       headers[TIMESTAMP_HEADER])


# --- admin


def test_admin_shows_the_suppression_on_the_recipient_and_clears_it(admin_client, client, fake, sent_email, mail,
                                                                    reachable_user):
    post_events(client, fake, [fake.event(mail, "bounce")])
    suppression = EmailSuppression.objects.get()

    page = admin_client.get(f"/admin/notifier/recipient/{reachable_user.id}/change/").content.decode()
    listing = admin_client.get("/admin/notifier/recipient/").content.decode()

    assert "email address suppressed: hard bounce on" in page and "does not exist" in page
    assert f"/admin/notifier/emailsuppression/{suppression.id}/delete/" in page
    assert 'alt="True"' in listing

    response = admin_client.post("/admin/notifier/recipient/", {
        "action": "email_suppressions_clear", "_selected_action": [reachable_user.id]})

    assert response.status_code == 302
    assert not EmailSuppression.objects.exists()


def test_admin_deletes_a_suppression_and_the_next_email_is_sent(admin_client, client, fake, sent_email, mail,
                                                               order_type, reachable_user):
    post_events(client, fake, [fake.event(mail, "bounce")])
    suppression = EmailSuppression.objects.get()

    response = admin_client.post(f"/admin/notifier/emailsuppression/{suppression.id}/delete/", {"post": "yes"})

    assert response.status_code == 302 and not EmailSuppression.objects.exists()
    email_send(order_type, reachable_user)


def test_admin_suppresses_an_address_by_hand_lower_cased(admin_client):
    response = admin_client.post("/admin/notifier/emailsuppression/add/", {
        "address": "Ops-Test@Example.com", "reason": "admin", "detail": "asked by the user"})

    assert response.status_code == 302
    suppression = EmailSuppression.objects.get()
    assert suppression.address == "ops-test@example.com" and suppression.source.startswith("admin")


# --- manage.py check


def test_check_warns_about_a_public_key_that_cannot_be_read(sendgrid_settings):
    assert [m for m in run_checks() if m.id == "notifier.W006"] == []
    sendgrid_settings.NOTIFIER_PROVIDER_CONFIG["sendgrid"]["webhook_public_key"] = "bm90IGEga2V5"

    [warning] = [m for m in run_checks() if m.id == "notifier.W006"]
    assert "every SendGrid event post will be refused" in warning.msg


def settings_in_a_fresh_process(**env) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NOTIFIER_", "EMAIL_", "SMTP_"))}
    code = ("import json; from notifier_project import settings as s; "
            "print(json.dumps([s.NOTIFIER_PROVIDER_CONFIG['sendgrid'], s.NOTIFIER_CHANNEL_PROVIDERS['email']]))")
    out = subprocess.run([sys.executable, "-c", code], env={**keep, **env}, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    return json.loads(out.stdout)


def test_the_public_key_setting_reaches_the_webhook_and_alone_does_not_make_sendgrid_send(fake):
    key_only = settings_in_a_fresh_process(SENDGRID_WEBHOOK_PUBLIC_KEY=fake.public_key)
    with_api_key = settings_in_a_fresh_process(SENDGRID_WEBHOOK_PUBLIC_KEY=fake.public_key, SENDGRID_API_KEY=API_KEY)

    assert key_only == [{"webhook_public_key": fake.public_key}, ["sandbox"]]
    assert with_api_key[0]["webhook_public_key"] == fake.public_key and with_api_key[1] == ["sendgrid"]


def test_a_replay_of_a_dead_email_to_a_suppressed_address_is_refused_with_the_reason(settings, order_type):
    use_scripted_providers(settings)
    dead = make_dead_letters(order_type, 3, "email")
    EmailSuppression.objects.create(address=dead[1].target.upper(), reason="hard_bounce")

    result = dead_letters_replay(None, {})

    assert result.replayed == 2
    [(delivery_id, refusal)] = result.refused.items()
    assert delivery_id == dead[1].id and "email address suppressed: hard bounce" in str(refusal)


def test_a_bounce_reopens_the_notification_and_starts_its_fallback_channel(client, sendgrid_settings, fake,
                                                                           order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["email"], fallback_channels=["sms"])
    route_due("high")
    deliver_due("email", "high")
    notification.refresh_from_db()
    assert notification.status == "delivered"  # the email was sent: a success so far
    [mail] = fake.accepted

    post_events(client, fake, [fake.event(mail, "bounce")])

    notification.refresh_from_db()
    assert notification.status == "processing"
    assert [d.channel for d in notification.deliveries.order_by("id")] == ["email", "sms"]
    assert notification.decisions[-1]["step"] == "fallback"
