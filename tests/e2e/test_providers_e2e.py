"""Real providers end to end: a real Celery worker sends through the official SDKs (aioapns, firebase-admin,
sendgrid, twilio, Django's SMTP backend) to fake servers that speak each provider's wire protocol."""
import socket

import pytest

from notifier.models import Delivery, Device, Notification, Recipient, Template
from notifier.pipeline.sweep import sweep
from tests.conftest import make_reachable_user
from tests.e2e.conftest import wait_until
from tests.fakes.apns import FakeAPNs
from tests.fakes.fcm import FakeFCM
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.smtp import FakeSMTP
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

IPHONE = "a" * 64  # APNs device tokens are 64 hex characters
ANDROID = "android-registration-token-1"


@pytest.fixture
def fakes():
    with FakeAPNs() as apns, FakeFCM() as fcm, FakeSendGrid() as sendgrid, FakeTwilio() as twilio, FakeSMTP() as smtp:
        yield {"apns": apns, "fcm": fcm, "sendgrid": sendgrid, "twilio": twilio, "smtp": smtp}


def provider_env(fakes) -> dict:
    """The environment an operator would set, pointed at the fakes."""
    apns, fcm, sendgrid, twilio, smtp = (fakes[n] for n in ("apns", "fcm", "sendgrid", "twilio", "smtp"))
    return {
        "APNS_KEY_FILE": apns.key_file, "APNS_KEY_ID": apns.key_id, "APNS_TEAM_ID": apns.team_id,
        "APNS_TOPIC": apns.topic, "APNS_USE_SANDBOX": "1", "APNS_HOST": apns.host, "APNS_PORT": apns.port,
        "APNS_CA_FILE": apns.ca_file,
        "FCM_CREDENTIALS_FILE": fcm.credentials_file, "FCM_ENDPOINT": fcm.url,
        "SENDGRID_API_KEY": sendgrid.api_key, "SENDGRID_HOST": sendgrid.url,
        "EMAIL_FROM": "shop@example.com", "EMAIL_FROM_NAME": "Shop",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp.port,
        "TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": "+15005550006", "TWILIO_BASE_URL": twilio.url,
        "TWILIO_STATUS_CALLBACK_URL": "https://notifier.example.com/webhooks/twilio",
    }


@pytest.fixture
def phone_user(db):
    return make_reachable_user(devices=[("ios", IPHONE), ("android", ANDROID)])


def send(api, **fields):
    body = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}, **fields}
    response = api.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["notifications"][0]["id"]


def wait_finished(notification_id):
    def finished():
        sweep()  # stands in for beat: wakes queues whose retries are due
        notification = Notification.objects.get(id=notification_id)
        return notification.status not in ("accepted", "processing") and notification

    return wait_until(finished, timeout=40, interval=0.3)


def test_one_notification_makes_exactly_the_right_request_on_each_provider(
    api, order_type, phone_user, fakes, start_worker
):
    start_worker(**provider_env(fakes))

    notification_id = send(api)
    notification = wait_finished(notification_id)

    assert notification.status == "delivered", list(notification.deliveries.values("channel", "last_error"))
    [apns] = fakes["apns"].requests
    assert apns.path == f"/3/device/{IPHONE}"
    assert apns.headers["apns-push-type"] == "alert" and apns.headers["apns-priority"] == "10"
    assert apns.headers["apns-topic"] == fakes["apns"].topic
    assert apns.body["aps"]["alert"] == {"title": "Order shipped", "body": "Order 789 ships with UPS."}
    assert apns.body["notification_id"] == notification_id
    [fcm] = fakes["fcm"].requests
    assert fcm.target == ANDROID
    assert fcm.message["notification"] == {"title": "Order shipped", "body": "Order 789 ships with UPS."}
    assert fcm.message["android"]["priority"] == "high"
    assert fcm.message["data"]["notification_id"] == notification_id
    [mail] = fakes["sendgrid"].requests
    assert mail.headers["authorization"] == f"Bearer {fakes['sendgrid'].api_key}"
    assert mail.body["personalizations"][0]["to"] == [{"email": "u_42@example.com"}]
    assert mail.body["subject"] == "Order 789 shipped"
    assert {c["type"] for c in mail.body["content"]} == {"text/plain", "text/html"}
    assert mail.body["headers"]["X-Notification-ID"] == notification_id
    [sms] = fakes["twilio"].requests
    assert sms.path == f"/2010-04-01/Accounts/{fakes['twilio'].account_sid}/Messages.json"
    assert sms.body["To"] == "+14155550100" and sms.body["Body"] == "Order 789 ships with UPS."
    assert sms.body["StatusCallback"] == "https://notifier.example.com/webhooks/twilio"
    assert fakes["smtp"].messages == []  # SendGrid worked: no failover
    providers = dict(Delivery.objects.values_list("target", "provider"))
    assert providers == {IPHONE: "apns", ANDROID: "fcm", "u_42@example.com": "sendgrid",
                         "+14155550100": "twilio", "u_42": "inbox"}
    assert Delivery.objects.get(target=IPHONE).provider_message_id == apns.apns_id


def test_badge_sound_and_collapse_key_reach_apns_and_fcm(api, order_type, phone_user, fakes, start_worker):
    Template.objects.filter(type=order_type, channel="push").update(badge=3, sound="chime.caf")
    start_worker(**provider_env(fakes))

    notification = wait_finished(send(api, channels=["push"], collapse_key="order-789"))

    assert notification.status == "delivered"
    [apns] = fakes["apns"].requests
    assert apns.headers["apns-collapse-id"] == "order-789"
    assert apns.body["aps"]["badge"] == 3 and apns.body["aps"]["sound"] == "chime.caf"
    [fcm] = fakes["fcm"].requests
    assert fcm.message["android"]["collapse_key"] == "order-789"
    assert fcm.message["android"]["notification"] == {"sound": "chime.caf", "notification_count": 3}


def test_a_worker_process_reuses_one_apns_connection_and_closes_it_at_shutdown(
    api, order_type, phone_user, fakes, start_worker
):
    worker = start_worker(concurrency=1, **provider_env(fakes))

    first = wait_finished(send(api, channels=["push"]))
    second = wait_finished(send(api, channels=["push"], data={"order_id": "790"}))

    assert (first.status, second.status) == ("delivered", "delivered")
    assert len(fakes["apns"].requests) == 2
    assert fakes["apns"].connections_opened == 1  # the second task sent on the first task's connection
    worker.stop()
    assert "closed 2 provider(s) at shutdown" in worker.output()  # apns and fcm, in the child process


def test_a_token_apns_reports_unregistered_is_never_sent_to_again(api, order_type, phone_user, fakes, start_worker):
    fakes["apns"].set_outcome(IPHONE, status=410, reason="Unregistered")
    start_worker(**provider_env(fakes))

    first = wait_finished(send(api, channels=["push"]))
    second = wait_finished(send(api, channels=["push"], data={"order_id": "790"}))

    assert first.status == "partially_delivered"
    failed = Delivery.objects.get(notification=first, target=IPHONE)
    assert (failed.status, failed.attempts) == ("failed", 1) and "Unregistered" in failed.last_error
    device = Device.objects.get(token=IPHONE)
    assert not device.active and "Unregistered" in device.deactivated_reason
    assert second.status == "delivered"
    assert [r.device_token for r in fakes["apns"].requests] == [IPHONE]  # only the first notification
    assert len(fakes["fcm"].requests) == 2


def test_an_fcm_unregistered_token_is_deactivated(api, order_type, phone_user, fakes, start_worker):
    fakes["fcm"].set_outcome(ANDROID, "UNREGISTERED")
    start_worker(**provider_env(fakes))

    wait_finished(send(api, channels=["push"]))

    assert not Device.objects.get(token=ANDROID).active


def test_a_sendgrid_outage_fails_over_to_smtp(api, order_type, phone_user, fakes, start_worker):
    fakes["sendgrid"].set_default(503)
    start_worker(**provider_env(fakes))

    notification = wait_finished(send(api, channels=["email"]))

    assert notification.status == "delivered"
    delivery = Delivery.objects.get(channel="email")
    assert delivery.provider == "smtp" and delivery.attempts == 1
    [mail] = fakes["smtp"].messages
    assert mail.rcpt_tos == ["u_42@example.com"]
    assert mail.message["X-Notification-ID"] == str(notification.id)


def test_a_twilio_outage_is_retried_until_it_recovers(api, order_type, phone_user, fakes, start_worker):
    fakes["twilio"].set_default(500)
    start_worker(**provider_env(fakes))
    notification_id = send(api, channels=["sms"])
    wait_until(lambda: Delivery.objects.filter(channel="sms", attempts__gte=1, status="queued").exists())

    fakes["twilio"].clear()  # the outage ends

    notification = wait_finished(notification_id)
    sms = Delivery.objects.get(channel="sms")
    assert notification.status == "delivered"
    assert sms.status == "sent" and sms.attempts >= 2 and sms.provider_message_id.startswith("SM")


def test_an_unsubscribed_number_is_recorded_and_skipped_next_time(api, order_type, phone_user, fakes, start_worker):
    fakes["twilio"].set_error("+14155550100", 21610)
    start_worker(**provider_env(fakes))

    wait_finished(send(api, channels=["sms"]))
    second = wait_finished(send(api, channels=["sms"], data={"order_id": "790"}))

    assert Recipient.objects.get(user_id="u_42").sms_opted_out_at is not None
    assert second.status == "unroutable"
    assert len(fakes["twilio"].requests) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Every error mapping of the provider issue, through a real worker: (provider, target, how the fake
# answers, what the delivery must show). "gone" means failed and the target is never used again. A program
# may return environment overrides for the worker (a provider pointed at a port nobody listens on).
SMS_TO, EMAIL_TO = "+14155550100", "u_42@example.com"
ERROR_CASES = [
    ("apns 410 Unregistered", "push", IPHONE, lambda f: f["apns"].set_outcome(IPHONE, 410, "Unregistered"), "gone"),
    ("apns 400 BadDeviceToken", "push", IPHONE, lambda f: f["apns"].set_outcome(IPHONE, 400, "BadDeviceToken"),
     "gone"),
    ("apns 400 DeviceTokenNotForTopic", "push", IPHONE,
     lambda f: f["apns"].set_outcome(IPHONE, 400, "DeviceTokenNotForTopic"), "gone"),
    ("apns 400 BadCollapseId", "push", IPHONE, lambda f: f["apns"].set_outcome(IPHONE, 400, "BadCollapseId"),
     "failed"),
    ("apns 429 TooManyRequests", "push", IPHONE, lambda f: f["apns"].set_outcome(IPHONE, 429, "TooManyRequests"),
     "rate_limited"),
    ("apns 500 InternalServerError", "push", IPHONE,
     lambda f: f["apns"].set_outcome(IPHONE, 500, "InternalServerError"), "retry"),
    ("apns 503 ServiceUnavailable", "push", IPHONE,
     lambda f: f["apns"].set_outcome(IPHONE, 503, "ServiceUnavailable"), "retry"),
    ("apns 403 ExpiredProviderToken, then a fresh JWT", "push", IPHONE,
     lambda f: f["apns"].fail_next(1, 403, "ExpiredProviderToken"), "sent"),
    ("apns connection refused", "push", IPHONE, lambda f: {"APNS_PORT": closed_port()}, "retry"),
    ("fcm UNREGISTERED", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "UNREGISTERED"), "gone"),
    ("fcm INVALID_ARGUMENT on the token", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "INVALID_TOKEN"),
     "gone"),
    ("fcm SENDER_ID_MISMATCH", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "SENDER_ID_MISMATCH"),
     "gone"),
    ("fcm INVALID_ARGUMENT", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "INVALID_ARGUMENT"), "failed"),
    ("fcm QUOTA_EXCEEDED with Retry-After", "push", ANDROID,
     lambda f: f["fcm"].set_outcome(ANDROID, "QUOTA_EXCEEDED", retry_after=30), "rate_limited"),
    ("fcm plain HTTP 429", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "HTTP_429"), "rate_limited"),
    ("fcm UNAVAILABLE", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "UNAVAILABLE"), "retry"),
    ("fcm INTERNAL", "push", ANDROID, lambda f: f["fcm"].set_outcome(ANDROID, "INTERNAL"), "retry"),
    ("sendgrid 400 invalid address", "email", EMAIL_TO, lambda f: f["sendgrid"].set_outcome(EMAIL_TO, 400), "failed"),
    ("sendgrid 429", "email", EMAIL_TO, lambda f: f["sendgrid"].set_outcome(EMAIL_TO, 429), "rate_limited"),
    ("sendgrid 500", "email", EMAIL_TO, lambda f: f["sendgrid"].set_outcome(EMAIL_TO, 500), "retry"),
    ("smtp 550 no such user", "email", EMAIL_TO, lambda f: f["smtp"].set_outcome(EMAIL_TO, "550 5.1.1 No such user"),
     "failed"),
    ("smtp 451 try again", "email", EMAIL_TO, lambda f: f["smtp"].set_outcome(EMAIL_TO, "451 4.3.0 Try again later"),
     "retry"),
    ("smtp connection refused", "email", EMAIL_TO, lambda f: {"SMTP_PORT": closed_port()}, "retry"),
    ("twilio 21211 invalid To", "sms", SMS_TO, lambda f: f["twilio"].set_error(SMS_TO, 21211), "failed"),
    ("twilio 21610 unsubscribed", "sms", SMS_TO, lambda f: f["twilio"].set_error(SMS_TO, 21610), "gone"),
    ("twilio 429", "sms", SMS_TO, lambda f: f["twilio"].set_outcome(SMS_TO, 429), "rate_limited"),
    ("twilio 20429 too many requests", "sms", SMS_TO, lambda f: f["twilio"].set_error(SMS_TO, 20429),
     "rate_limited"),
    ("twilio 500", "sms", SMS_TO, lambda f: f["twilio"].set_outcome(SMS_TO, 500), "retry"),
]


@pytest.mark.parametrize("case, channel, target, program, expected", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_provider_error_is_handled_as_its_kind(case, channel, target, program, expected, api, order_type,
                                                   phone_user, fakes, start_worker):
    email_provider = "smtp" if case.startswith("smtp") else "sendgrid"
    overrides = program(fakes) or {}
    start_worker(**{**provider_env(fakes), **overrides}, NOTIFIER_EMAIL_PROVIDERS=email_provider)

    send(api, channels=[channel])
    delivery = wait_until(
        lambda: Delivery.objects.filter(target=target, attempts__gte=1).exclude(status="sending").first(),
        timeout=30,
    )

    if expected == "sent":
        assert delivery.status == "sent", delivery.last_error
        return
    assert delivery.attempts == 1 and delivery.last_error
    if expected in ("failed", "gone"):
        assert delivery.status == "failed" and " permanent: " in delivery.last_error, delivery.last_error
    if expected == "retry":
        assert delivery.status == "queued" and " transient: " in delivery.last_error, delivery.last_error
    if expected == "rate_limited":
        assert delivery.status == "queued" and " rate_limited: " in delivery.last_error, delivery.last_error
    if case.endswith("connection refused"):
        assert "connection" in delivery.last_error.lower(), delivery.last_error
    if case.startswith("twilio 21211"):
        assert f"invalid 'To' number {SMS_TO}" in delivery.last_error, delivery.last_error
    if case.startswith("fcm QUOTA_EXCEEDED"):
        assert (delivery.next_attempt_at - delivery.claimed_at).total_seconds() >= 29  # Retry-After: 30
    target_kept = {
        "push": lambda: Device.objects.get(token=target).active,
        "sms": lambda: Recipient.objects.get(user_id="u_42").sms_opted_out_at is None,
        "email": lambda: True,
    }[channel]()
    assert target_kept == (expected != "gone")
