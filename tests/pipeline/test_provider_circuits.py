"""Deliveries behind the providers' circuits and send rates: an open circuit skips to the next provider
without asking the one that is down, or, with none left, the delivery waits without spending an attempt."""
from datetime import datetime, timezone as dt_timezone

import pytest

from notifier.models import Delivery, DeliveryStatus
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.providers.circuit import KEY_PREFIX, circuit_admit, circuit_record
from tests.conftest import make_reachable_user
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.smtp import FakeSMTP
from tests.fakes.twilio import FakeTwilio
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def fakes():
    with FakeSendGrid() as sendgrid, FakeSMTP() as smtp, FakeTwilio() as twilio:
        yield {"sendgrid": sendgrid, "smtp": smtp, "twilio": twilio}


@pytest.fixture
def providers(settings, fakes):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"email": ["sendgrid", "smtp"], "sms": ["twilio"]}
    settings.NOTIFIER_PROVIDER_CONFIG = {
        "sendgrid": {"api_key": fakes["sendgrid"].api_key, "host": fakes["sendgrid"].url,
                     "from_email": "shop@example.com"},
        "smtp": {"host": "127.0.0.1", "port": fakes["smtp"].port, "from_email": "shop@example.com"},
        "twilio": {"account_sid": fakes["twilio"].account_sid, "auth_token": fakes["twilio"].auth_token,
                   "from_number": "+15005550006", "base_url": fakes["twilio"].url},
    }
    settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD = 3
    settings.NOTIFIER_CIRCUIT_COOLDOWN_SECONDS = 30
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {}
    return fakes


def routed(order_type, users=1, channel="email"):
    for i in range(users):
        make_notification(order_type, make_reachable_user(f"u{i}", devices=[]), channels=[channel])
    route_due("high")


def open_circuit(provider):
    circuit_record(provider, succeeded=False, trailing_failures=3)
    return circuit_admit(provider).until


def test_an_open_sendgrid_circuit_sends_the_email_through_smtp_without_asking_sendgrid(order_type, providers):
    open_circuit("sendgrid")
    routed(order_type)

    deliver_due("email", "high")

    email = Delivery.objects.get(channel="email")
    assert (email.status, email.provider, email.attempts) == ("sent", "smtp", 1)
    assert providers["sendgrid"].requests == []
    assert len(providers["smtp"].messages) == 1


def test_an_open_twilio_circuit_keeps_the_sms_waiting_until_it_may_close_without_spending_an_attempt(
    order_type, providers
):
    until = open_circuit("twilio")
    routed(order_type, channel="sms")

    deliver_due("sms", "high")

    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.attempts, sms.provider) == (DeliveryStatus.QUEUED, 0, "twilio")
    assert abs(sms.next_attempt_at.timestamp() - until) < 0.001
    assert "twilio circuit open" in sms.last_error
    assert providers["twilio"].requests == []


def test_an_sms_waiting_out_an_outage_is_never_dead_however_many_times_it_is_claimed(
    order_type, providers, settings
):
    open_circuit("twilio")
    routed(order_type, channel="sms")

    for _ in range(settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"] + 2):
        Delivery.objects.update(next_attempt_at=datetime.now(dt_timezone.utc))
        deliver_due("sms", "high")

    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.attempts) == (DeliveryStatus.QUEUED, 0)


def test_failures_during_a_batch_open_the_circuit_and_the_rest_of_the_batch_goes_to_smtp(order_type, providers):
    providers["sendgrid"].set_default(503)
    routed(order_type, users=40)

    deliver_due("email", "high")

    assert set(Delivery.objects.values_list("status", "provider")) == {("sent", "smtp")}
    # one group of 8 was in flight when the third failure opened the circuit; nothing was sent after it
    assert len(providers["sendgrid"].requests) == 8
    assert len(providers["smtp"].messages) == 40
    assert circuit_admit("sendgrid").verdict == "wait"


def test_permanent_errors_do_not_open_the_circuit(order_type, providers):
    providers["sendgrid"].set_default(400)
    routed(order_type, users=10)

    deliver_due("email", "high")

    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    assert circuit_admit("sendgrid").verdict == "send"


def cooldown_over(redis_client, provider):
    redis_client.hset(KEY_PREFIX + provider, "open_until", "1")


def test_after_the_cooldown_one_probe_goes_first_and_its_success_lets_the_rest_through(
    order_type, providers, clean_redis
):
    open_circuit("twilio")
    cooldown_over(clean_redis, "twilio")
    routed(order_type, users=5, channel="sms")

    deliver_due("sms", "high")

    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert len(providers["twilio"].requests) == 5
    assert circuit_admit("twilio").verdict == "send"


def test_a_failed_probe_keeps_the_rest_waiting_and_opens_the_circuit_for_longer(order_type, providers, clean_redis):
    providers["twilio"].set_default(503)
    open_circuit("twilio")
    cooldown_over(clean_redis, "twilio")
    routed(order_type, users=5, channel="sms")

    deliver_due("sms", "high")

    assert len(providers["twilio"].requests) == 1  # the probe only
    assert sorted(Delivery.objects.values_list("status", "attempts")) == [("queued", 0)] * 4 + [("queued", 1)]
    admission = circuit_admit("twilio")
    assert admission.verdict == "wait"
    assert 55 < admission.until - datetime.now(dt_timezone.utc).timestamp() <= 60  # 30 s doubled


def test_sms_over_the_send_rate_wait_for_their_turn_without_spending_an_attempt(order_type, providers, settings):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {"twilio": 0.25}  # a token every 4 s: longer than a sleep
    routed(order_type, users=3, channel="sms")

    deliver_due("sms", "high")

    assert len(providers["twilio"].requests) == 1
    waiting = Delivery.objects.filter(status="queued")
    assert [(d.attempts, "over its send rate" in d.last_error) for d in waiting] == [(0, True)] * 2
    assert all(d.next_attempt_at > datetime.now(dt_timezone.utc) for d in waiting)


def test_sms_over_the_send_rate_by_a_moment_are_sent_in_the_same_batch(order_type, providers, settings):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {"twilio": 10}
    routed(order_type, users=14, channel="sms")

    deliver_due("sms", "high")

    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    times = sorted(r.received_at for r in providers["twilio"].requests)
    assert times[-1] - times[0] >= 0.3  # 10 at once, then 4 more at 10 per second
