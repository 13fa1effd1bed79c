"""Fault test 6: a provider down, and a provider that hangs, under real workers laid out as `make run`
lays them out (celeryconfig.WORKER_GROUPS).

Down: SendGrid answers 503 for a while. Its circuit opens after NOTIFIER_CIRCUIT_FAILURE_THRESHOLD
failures, SMTP takes every email meanwhile without SendGrid being asked (the fake sees at most the
threshold plus the probes), and the circuit closes once SendGrid is back. Hanging: Twilio accepts
connections and never answers. Push, email and in-app at the same priority keep their latency while the SMS
wait in the database, none dead, none spending attempts on an open circuit.
"""
import math
import socket
import time

import pytest

import celeryconfig
from notifier.models import Delivery, Notification
from notifier.pipeline.sweep import sweep
from notifier.providers.circuit import circuit_states
from tests.conftest import make_reachable_user
# The e2e fixtures, imported here rather than through a conftest.py of tests/chaos (other chaos tests have
# their own needs): pytest finds fixtures in a test module's namespace.
from tests.e2e.conftest import start_worker, wait_until  # noqa: F401
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.smtp import FakeSMTP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THRESHOLD = 3
COOLDOWN_SECONDS = 1.5
MAX_COOLDOWN_SECONDS = 3
OUTAGE_SECONDS = 10  # the 60 s, shortened with the cool-downs


def email_env(sendgrid, smtp) -> dict:
    return {
        "SENDGRID_API_KEY": sendgrid.api_key, "SENDGRID_HOST": sendgrid.url, "EMAIL_FROM": "shop@example.com",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp.port,
        "NOTIFIER_CIRCUIT_FAILURE_THRESHOLD": THRESHOLD, "NOTIFIER_CIRCUIT_COOLDOWN_SECONDS": COOLDOWN_SECONDS,
        "NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS": MAX_COOLDOWN_SECONDS,
        "NOTIFIER_RATE_LIMITS_ENABLED": "false",  # one user gets every message here
    }


def start_groups(start_worker, names, **env):
    """The worker groups of `make run` (Procfile) named, with their concurrency there."""
    concurrency = {"high": 2, "medium": 1, "low": 1, "push": 2, "email": 2, "sms": 2}
    for name in names:
        start_worker(queues=celeryconfig.WORKER_GROUPS[name], concurrency=concurrency[name], **env)


def send(api, i, channels, priority="medium"):
    body = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": str(i)}, "channels": channels,
            "priority": priority}
    response = api.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["notifications"][0]["id"]


def wait_finished(ids, timeout=60):
    def finished():
        sweep()  # stands in for beat
        return not Notification.objects.filter(id__in=ids, status__in=("accepted", "processing")).exists()

    wait_until(finished, timeout=timeout, interval=0.3)


def test_sendgrid_down_opens_its_circuit_smtp_takes_the_email_and_the_circuit_closes_after_recovery(
    api, order_type, start_worker
):
    make_reachable_user(devices=[])
    with FakeSendGrid() as sendgrid, FakeSMTP() as smtp:
        start_groups(start_worker, ["medium", "email"], **email_env(sendgrid, smtp))
        sendgrid.set_default(503)
        ids, requests_when_opened = [], None
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        i = 0
        while time.monotonic() < outage_ends:
            ids.append(send(api, i, ["email"]))
            i += 1
            time.sleep(0.25)
            if requests_when_opened is None and circuit_states(["sendgrid"])["sendgrid"] != "closed":
                requests_when_opened = len(sendgrid.requests)
        during_outage = len(sendgrid.requests)

        sendgrid.set_default(202)  # SendGrid is back: the next probe closes the circuit
        recovery_ends = time.monotonic() + MAX_COOLDOWN_SECONDS + 10
        while circuit_states(["sendgrid"])["sendgrid"] != "closed":
            assert time.monotonic() < recovery_ends, "the circuit did not close after SendGrid recovered"
            ids.append(send(api, i, ["email"]))
            i += 1
            time.sleep(0.25)
        after = [send(api, 2000 + j, ["email"]) for j in range(3)]
        wait_finished(ids + after)

    emails = Delivery.objects.filter(notification_id__in=ids)
    assert set(emails.values_list("status", "attempts")) == {("sent", 1)}  # none waited, none dead
    # SMTP took every email until the probe that closed the circuit, SendGrid none before it. An email the
    # test sent in its last poll before it saw the circuit closed may be sent after it, by SendGrid.
    closed_at = min(request.received_at for request in sendgrid.requests[during_outage:])
    by_sendgrid = emails.filter(provider="sendgrid")
    assert 1 <= by_sendgrid.count() <= 2 and emails.filter(provider="smtp").count() >= len(ids) - 2 > 30
    assert all(sent_at.timestamp() >= closed_at - 0.01 for sent_at in by_sendgrid.values_list("sent_at", flat=True))
    assert requests_when_opened is not None and requests_when_opened <= THRESHOLD + 1
    # While open, SendGrid sees only the probes: at most one per cool-down (1.5, 3, 3, … s) of the outage,
    # and what a second worker process had in flight when the circuit opened.
    probes_at_most = math.ceil(OUTAGE_SECONDS / COOLDOWN_SECONDS)
    assert during_outage <= THRESHOLD + probes_at_most + 1, f"{during_outage} requests to a SendGrid that was down"
    assert set(Delivery.objects.filter(notification_id__in=after).values_list("provider", flat=True)) == {"sendgrid"}


def hanging_server():
    """Accepts connections (the kernel completes the handshake) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def test_a_hanging_twilio_leaves_push_email_and_in_app_at_the_same_priority_at_their_latency(
    api, order_type, start_worker
):
    make_reachable_user(devices=[("android", "android-token-1")])
    hanging = hanging_server()
    with FakeSendGrid() as sendgrid, FakeSMTP() as smtp:
        env = {
            **email_env(sendgrid, smtp),
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token", "TWILIO_FROM_NUMBER": "+15005550006",
            "TWILIO_BASE_URL": f"http://127.0.0.1:{hanging.getsockname()[1]}",
            "NOTIFIER_PROVIDER_TIMEOUT_SECONDS": 2,
            "NOTIFIER_PUSH_PROVIDERS": "sandbox",
        }
        start_groups(start_worker, ["medium", "push", "email", "sms"], **env)
        # Warm up: a worker's first task imports and connects (about a second here); normal latency is after.
        wait_finished([send(api, -1, ["push", "email", "in_app"])])
        started = time.monotonic()
        ids = []
        for i in range(30):
            ids.append(send(api, i, ["push", "email", "sms", "in_app"]))
            time.sleep(0.3)
        others = Delivery.objects.filter(notification_id__in=ids).exclude(channel="sms")
        wait_until(lambda: others.count() == 90 and not others.filter(status__in=("queued", "sending")).exists(),
                   timeout=30)
        sms_state = circuit_states(["twilio"])["twilio"]
        elapsed = time.monotonic() - started
    hanging.close()

    assert set(others.values_list("status", flat=True)) == {"sent", "delivered"}
    latencies = [(d.sent_at - d.notification.created_at).total_seconds() for d in others.select_related("notification")]
    assert percentile(latencies, 0.99) < 1.0, sorted(latencies)[-10:]
    sms = Delivery.objects.filter(notification_id__in=ids, channel="sms")
    assert not sms.filter(status__in=("sent", "dead", "failed")).exists()
    assert sms_state != "closed"  # timeouts opened Twilio's circuit
    assert sms.filter(status="queued", last_error__contains="circuit open").exists()
    # Attempts went only to real sends: the groups in flight (8 per process of worker_sms) before the
    # circuit opened, and one probe per cool-down after; every other SMS waits without spending one.
    attempts = sum(sms.values_list("attempts", flat=True))
    assert attempts <= 2 * 8 + math.ceil(elapsed / COOLDOWN_SECONDS), attempts
