"""Twilio's status callback: signed with the real RequestValidator, applied to the delivery Twilio names.

The deliveries are sent for real first: through the Twilio adapter to the fake Twilio API, so their
provider_message_id is a SID the SDK got back."""
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.db import transaction
from twilio.request_validator import RequestValidator

from notifier.models import Delivery, Notification, PendingProviderEvent
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.webhooks.twilio import STATUS_PATH
from tests.fakes.twilio import FakeTwilio
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "status-callback-secret"
CALLBACK_URL = "https://notifier.example.com" + STATUS_PATH


@pytest.fixture(scope="module")
def fake_twilio():
    with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def twilio_settings(settings, fake_twilio):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["sandbox"], "email": ["sandbox"], "sms": ["twilio"]}
    settings.NOTIFIER_PROVIDER_CONFIG = {"twilio": {
        "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15005550006",
        "base_url": fake_twilio.url, "status_callback_url": CALLBACK_URL, "timeout": 2,
    }}
    return settings


@pytest.fixture
def sent_sms(twilio_settings, fake_twilio, order_type, reachable_user):
    """An SMS delivery sent through the fake Twilio: status sent, provider_message_id the SM… sid."""
    fake_twilio.clear()
    notification = make_notification(order_type, reachable_user, channels=["sms", "in_app"])
    route_due("high")
    deliver_due("sms", "high")
    deliver_due("in_app", "high")
    [request] = fake_twilio.requests
    assert request.body["StatusCallback"] == CALLBACK_URL
    delivery = Delivery.objects.get(notification=notification, channel="sms")
    assert delivery.status == "sent" and delivery.provider_message_id.startswith("SM")
    return delivery


def callback(client, fields, url=CALLBACK_URL, token=AUTH_TOKEN, signature=None):
    """POST fields as Twilio does: form-encoded, signed over the callback URL and the sorted fields."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, fields)
    return client.post(STATUS_PATH, urlencode(fields), content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature)


def status_fields(delivery, status, **extra):
    return {"MessageSid": delivery.provider_message_id, "MessageStatus": status, "AccountSid": ACCOUNT_SID,
            "To": delivery.target, "From": "+15005550006", "ApiVersion": "2010-04-01", **extra}


def test_delivered_marks_the_delivery_delivered(client, sent_sms):
    response = callback(client, status_fields(sent_sms, "delivered"))

    assert response.status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == "delivered"
    assert sent_sms.notification.status == "delivered"


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_undelivered_or_failed_marks_it_failed_with_twilios_error_code(client, sent_sms, status):
    notification = Notification.objects.get(id=sent_sms.notification_id)
    assert notification.status == "delivered"  # in-app delivered, SMS sent: counted as a success so far

    response = callback(client, status_fields(sent_sms, status, ErrorCode="30003"))

    assert response.status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == "failed" and sent_sms.failed_at is not None
    assert "30003" in sent_sms.last_error and status in sent_sms.last_error
    notification.refresh_from_db()
    assert notification.status == "partially_delivered"  # in-app still delivered


@pytest.mark.parametrize("status", ["queued", "sending", "sent", "accepted"])
def test_intermediate_statuses_change_nothing(client, sent_sms, status):
    assert callback(client, status_fields(sent_sms, status)).status_code == 204

    sent_sms.refresh_from_db()
    assert sent_sms.status == "sent"


def test_callbacks_are_idempotent_and_a_late_one_does_not_undo_a_final_status(client, sent_sms):
    for status in ("delivered", "delivered", "sent", "undelivered"):
        assert callback(client, status_fields(sent_sms, status, ErrorCode="30005")).status_code == 204

    sent_sms.refresh_from_db()
    assert sent_sms.status == "delivered" and sent_sms.last_error == ""


def test_an_unknown_message_sid_is_acknowledged_and_changes_no_delivery(client, sent_sms):
    fields = {**status_fields(sent_sms, "delivered"), "MessageSid": "SM" + "0" * 32}

    assert callback(client, fields).status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == "sent"


def test_a_callback_that_beats_the_workers_record_of_the_sid_is_applied_when_the_sid_lands(
    client, twilio_settings, fake_twilio, order_type, reachable_user
):
    sid = "SM" + "7" * 32
    fake_twilio.clear()
    fake_twilio.next_sids = [sid]
    notification = make_notification(order_type, reachable_user, channels=["sms"])
    route_due("high")
    early = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID, "To": "+14155550100"}

    assert callback(client, early).status_code == 204  # before the worker has recorded the send
    assert PendingProviderEvent.objects.filter(provider_message_id=sid).exists()
    deliver_due("sms", "high")

    delivery = Delivery.objects.get(notification=notification, channel="sms")
    assert (delivery.provider_message_id, delivery.status) == (sid, "delivered")
    assert list(delivery.events.order_by("id").values_list("status", "source")) == [
        ("sending", "worker"), ("sent", "worker"), ("delivered", "twilio")]
    assert not PendingProviderEvent.objects.exists()
    notification.refresh_from_db()
    assert notification.status == "delivered"


def test_a_kept_callback_no_delivery_claims_is_purged_after_its_retention(client, twilio_settings, settings):
    from datetime import timedelta

    from django.utils import timezone

    from notifier.pipeline.sweep import purge_pending_events

    fields = {"MessageSid": "SM" + "8" * 32, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    callback(client, fields)

    assert purge_pending_events() == 0
    later = timezone.now() + timedelta(seconds=settings.NOTIFIER_PENDING_EVENT_RETENTION_SECONDS + 1)
    assert purge_pending_events(now=later) == 1


def test_each_callback_is_kept_in_the_deliverys_history_with_twilios_fields(client, sent_sms):
    callback(client, status_fields(sent_sms, "delivered"))
    callback(client, status_fields(sent_sms, "undelivered", ErrorCode="30005"))  # late: recorded, not applied

    events = list(sent_sms.events.filter(source="twilio").order_by("id"))
    assert [(e.status, e.applied) for e in events] == [("delivered", True), ("failed", False)]
    assert events[1].payload["ErrorCode"] == "30005"


@pytest.mark.parametrize("forge", [
    lambda fields: {"signature": ""},  # no signature at all
    lambda fields: {"signature": "not-a-signature"},
    lambda fields: {"token": "another-accounts-token"},
    lambda fields: {"url": "https://attacker.example" + STATUS_PATH},
    lambda fields: {"signature": RequestValidator(AUTH_TOKEN).compute_signature(
        CALLBACK_URL, {**fields, "MessageStatus": "sent"})},  # signed for other fields
])
def test_a_bad_signature_is_403_and_changes_nothing(client, sent_sms, forge):
    fields = status_fields(sent_sms, "failed", ErrorCode="30007")

    response = callback(client, fields, **forge(fields))

    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    sent_sms.refresh_from_db()
    assert sent_sms.status == "sent"


def test_without_a_configured_callback_url_the_request_url_is_what_is_signed(client, sent_sms, twilio_settings):
    del twilio_settings.NOTIFIER_PROVIDER_CONFIG["twilio"]["status_callback_url"]
    request_url = "http://testserver" + STATUS_PATH

    assert callback(client, status_fields(sent_sms, "delivered"), url=CALLBACK_URL).status_code == 403
    assert callback(client, status_fields(sent_sms, "delivered"), url=request_url).status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == "delivered"


def test_without_twilio_credentials_every_callback_is_refused(client, settings, sent_sms):
    settings.NOTIFIER_PROVIDER_CONFIG = {}

    assert callback(client, status_fields(sent_sms, "delivered")).status_code == 403


def test_only_post_is_allowed_and_the_refusal_is_json(client):
    response = client.get(STATUS_PATH)

    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def settings_in_a_fresh_process(**env) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "NOTIFIER_"))}
    code = ("import json; from notifier_project import settings as s; "
            "print(json.dumps(s.NOTIFIER_PROVIDER_CONFIG['twilio']))")
    out = subprocess.run([sys.executable, "-c", code], env={**keep, **env}, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    return json.loads(out.stdout)


def test_the_callback_url_defaults_to_the_public_url_plus_the_webhook_path():
    credentials = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}

    public = settings_in_a_fresh_process(NOTIFIER_PUBLIC_URL="https://notify.example.org/", **credentials)
    explicit = settings_in_a_fresh_process(NOTIFIER_PUBLIC_URL="https://notify.example.org",
                                           TWILIO_STATUS_CALLBACK_URL="https://hooks.example.org/t", **credentials)
    local = settings_in_a_fresh_process(**credentials)
    no_twilio = settings_in_a_fresh_process(NOTIFIER_PUBLIC_URL="https://notify.example.org")

    assert public["status_callback_url"] == "https://notify.example.org/api/v1/webhooks/twilio/status"
    assert explicit["status_callback_url"] == "https://hooks.example.org/t"
    assert "status_callback_url" not in local  # Twilio could not reach the local default
    assert no_twilio == {}  # no credentials: Twilio stays unconfigured and SMS stays on the sandbox


def test_a_late_undelivered_starts_the_notifications_fallback_channel(client, twilio_settings, fake_twilio, order_type,
                                                                      reachable_user):
    fake_twilio.clear()
    notification = make_notification(order_type, reachable_user, channels=["sms"], fallback_channels=["in_app"])
    route_due("high")
    deliver_due("sms", "high")
    sms = Delivery.objects.get(notification=notification, channel="sms")
    notification.refresh_from_db()
    assert notification.status == "delivered"  # on Twilio's word that it took the message

    callback(client, status_fields(sms, "undelivered", ErrorCode="30003"))

    notification.refresh_from_db()
    assert notification.status == "processing"
    assert Delivery.objects.get(notification=notification, channel="in_app").status == "queued"


class TestACallbackRacingTheWorkersRecord:
    """The callback and the worker's record of the SID, in two connections, in both orders: the report is
    applied once either way, never left kept (status._message_ids_lock)."""

    pytestmark = pytest.mark.django_db(transaction=True)

    @pytest.fixture
    def sending_sms(self, order_type, reachable_user):
        from notifier.pipeline.route import route_due as route

        notification = make_notification(order_type, reachable_user, channels=["sms"])
        route("high")
        delivery = Delivery.objects.get(notification=notification, channel="sms")
        Delivery.objects.filter(id=delivery.id).update(status="sent", provider="twilio")
        return delivery

    @staticmethod
    def callback_in_a_thread(started):
        import threading

        from django.db import connection

        from notifier.pipeline.status import StatusEvent, provider_events_apply

        def run():
            try:
                with transaction.atomic():
                    started.set()
                    provider_events_apply("twilio", [("SM" + "9" * 32, StatusEvent(0, "delivered", "twilio"))])
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def test_a_callback_that_waits_for_the_workers_commit_finds_the_sid(self, sending_sms):
        import threading
        import time

        from notifier.pipeline.status import pending_events_release

        started = threading.Event()
        with transaction.atomic():  # the worker's outcome write, not committed yet
            Delivery.objects.filter(id=sending_sms.id).update(provider_message_id="SM" + "9" * 32)
            sending_sms.refresh_from_db()
            pending_events_release([sending_sms])
            thread = self.callback_in_a_thread(started)
            started.wait(5)
            time.sleep(0.5)  # the callback looks the SID up now, before the worker commits
        thread.join(10)

        sending_sms.refresh_from_db()
        assert sending_sms.status == "delivered"
        assert not PendingProviderEvent.objects.exists()

    def test_a_worker_that_waits_for_the_callbacks_commit_finds_its_report(self, sending_sms, monkeypatch):
        import threading

        from notifier.pipeline import status
        from notifier.pipeline.status import pending_events_release

        kept, go_on = threading.Event(), threading.Event()
        keep = PendingProviderEvent.objects.bulk_create

        def keep_then_wait(rows, *args, **kwargs):  # the callback has kept its report, not committed yet
            created = keep(rows, *args, **kwargs)
            if rows and rows[0].provider == "twilio":
                kept.set()
                go_on.wait(5)
            return created

        monkeypatch.setattr(status.PendingProviderEvent.objects, "bulk_create", keep_then_wait)
        thread = self.callback_in_a_thread(threading.Event())
        assert kept.wait(5)
        releaser = threading.Timer(0.5, go_on.set)
        releaser.start()
        with transaction.atomic():  # the worker records the SID while the callback's report is uncommitted
            Delivery.objects.filter(id=sending_sms.id).update(provider_message_id="SM" + "9" * 32)
            sending_sms.refresh_from_db()
            pending_events_release([sending_sms])
        thread.join(10)

        sending_sms.refresh_from_db()
        assert sending_sms.status == "delivered"
        assert not PendingProviderEvent.objects.exists()
