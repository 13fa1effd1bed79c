"""One notification, through real Celery workers on the real broker, from the API to every channel."""
import socket
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.test import override_settings

from notifier.models import Delivery, InboxItem, Notification, SandboxMessage
from notifier.pipeline.sweep import release_expired_claims, sweep
from tests.e2e.conftest import free_port, wait_until
from tests.fakes.sendgrid import FakeSendGrid
from tests.support import scripted_provider
from tests.support.scripted_provider import script, scripted_left

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def notification_status(api, notification_id):
    return api.get(f"/api/v1/notifications/{notification_id}").json()


def test_a_notification_goes_from_accepted_to_delivered_on_every_channel(api, order_type, reachable_user,
                                                                       start_worker):
    start_worker()

    response = api.post("/api/v1/notifications",
                        {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}}, format="json")
    assert response.status_code == 202
    notification_id = response.json()["notifications"][0]["id"]
    assert response.json()["notifications"][0]["status"] == "accepted"

    body = wait_until(lambda: (b := notification_status(api, notification_id))["status"] == "delivered" and b)

    assert sorted((d["channel"], d["target"], d["status"]) for d in body["deliveries"]) == [
        ("email", "u_42@example.com", "delivered"),
        ("in_app", "u_42", "delivered"),
        ("push", "android-token-1", "delivered"),
        ("push", "ios-token-1", "delivered"),
        ("sms", "+14155550100", "delivered"),
    ]
    sent = {(m.channel, m.to): m.message for m in SandboxMessage.objects.all()}
    assert sent[("push", "ios-token-1")]["body"] == "Order 789 ships with UPS."
    assert sent[("push", "ios-token-1")]["platform"] == "ios"
    assert sent[("email", "u_42@example.com")]["subject"] == "Order 789 shipped"
    assert sent[("sms", "+14155550100")]["body"] == "Order 789 ships with UPS."
    assert InboxItem.objects.get().title == "Order shipped"


class SilentServer:
    """Accepts TCP connections and never answers: a broker that hangs rather than refuses."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("outage", ["refused", "hanging"])
def test_a_notification_accepted_while_the_broker_is_down_is_delivered_once_it_is_back(
    outage, producer, order_type, reachable_user, start_api, start_worker
):
    silent = SilentServer() if outage == "hanging" else None
    dead_url = f"redis://127.0.0.1:{silent.port if silent else free_port()}/15"
    api_server = start_api(CELERY_BROKER_URL=dead_url, REDIS_URL=dead_url)
    headers = {"Authorization": f"Bearer {producer.key}"}

    started = time.monotonic()
    response = requests.post(f"{api_server.url}/api/v1/notifications", headers=headers, timeout=30,
                             json={"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}})
    elapsed = time.monotonic() - started
    health = requests.get(f"{api_server.url}/healthz", timeout=30)

    assert response.status_code == 202
    assert elapsed < 6, f"the request waited {elapsed:.1f} s on the broker"
    assert health.status_code == 503
    assert health.json()["checks"]["database"] == "ok"
    assert health.json()["checks"]["broker"].startswith("down")
    notification = Notification.objects.get(id=response.json()["notifications"][0]["id"])
    assert notification.status == "accepted"  # stored, waiting: nothing lost

    # The broker is back (workers and the sweeper use the real one): beat's sweep wakes the route queue.
    start_worker()
    sweep()
    wait_until(lambda: Notification.objects.get(id=notification.id).status == "delivered")
    if silent:
        silent.close()


def test_a_delivery_whose_worker_is_killed_mid_send_is_sent_by_another_worker(
    api, order_type, reachable_user, start_worker
):
    providers = {"NOTIFIER_PUSH_PROVIDERS": "tests.support.scripted_provider"}
    script("ios-token-1", {"kind": "sleep", "seconds": 60})
    doomed = start_worker(**providers)
    notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "1"}, "channels": ["push"]},
                               format="json").json()["notifications"][0]["id"]
    wait_until(lambda: Delivery.objects.filter(target="ios-token-1", status="sending").exists())
    # Claimed is not yet sending: kill only once the worker has taken the scripted 60 s send, or the next
    # worker would take it instead and sleep past this test's wait.
    wait_until(lambda: scripted_left("ios-token-1") == 0)

    doomed.kill()  # SIGKILL mid-send: no chance to record anything

    with override_settings(NOTIFIER_CLAIM_LEASE_SECONDS=0):
        assert release_expired_claims() >= 1
    start_worker(**providers)
    sweep()
    wait_until(lambda: Notification.objects.get(id=notification_id).status == "delivered")
    delivery = Delivery.objects.get(target="ios-token-1")
    assert delivery.attempts == 2
    assert [s["to"] for s in scripted_provider.sent()].count("ios-token-1") == 1


def test_a_worker_killed_mid_batch_sends_again_only_what_was_in_flight(order_type, start_worker):
    from notifier.models import Recipient
    from notifier.pipeline.dispatch import RECORD_GROUP_SIZE
    from notifier.pipeline.route import route_due
    from notifier.providers.sendgrid import SendGridProvider
    from tests.pipeline.test_route import make_notification

    count = 450
    for i in range(count):
        make_notification(order_type, Recipient.objects.create(user_id=f"user-{i}", email=f"user-{i}@example.com"),
                          channels=["email"])
    route_due("high", batch_size=count)
    with FakeSendGrid(latency=0.02) as sendgrid:  # records every call it takes, as a real provider's log would
        env = {"NOTIFIER_EMAIL_PROVIDERS": "sendgrid", "SENDGRID_API_KEY": sendgrid.api_key,
               "SENDGRID_HOST": sendgrid.url, "EMAIL_FROM": "shop@example.com", "NOTIFIER_DELIVER_BATCH_SIZE": count}
        doomed = start_worker(queues=["email.high"], concurrency=1, **env)
        wait_until(lambda: len(sendgrid.requests) >= count // 2, timeout=60)

        doomed.kill()  # SIGKILL in the middle of its one batch of 450

        # Its database session ends (rolling back a group it was writing) once PostgreSQL sees it gone.
        wait_until(lambda: other_database_sessions() == 0)
        recorded_before_the_kill = Delivery.objects.filter(status="sent").count()
        with override_settings(NOTIFIER_CLAIM_LEASE_SECONDS=0):
            assert release_expired_claims() == count - recorded_before_the_kill
        start_worker(queues=["email.high"], **env)

        def all_sent():
            sweep()  # stands in for beat: the killed worker took its queue's pending wake-up with it
            return not Delivery.objects.exclude(status="sent").exists()

        wait_until(all_sent, timeout=90, interval=1)
        calls = sendgrid.calls_per_delivery()

    assert 0 < recorded_before_the_kill < count  # it died mid-batch, with outcomes already recorded
    assert set(calls) == {str(i) for i in Delivery.objects.values_list("id", flat=True)}  # nothing lost
    duplicates = sum(n - 1 for n in calls.values())
    # Sent twice: only what was in flight at the kill, and the one group of outcomes not yet recorded.
    assert duplicates <= SendGridProvider.batch_concurrency + RECORD_GROUP_SIZE, calls.most_common(5)
    assert not Notification.objects.exclude(status="delivered").exists()


def other_database_sessions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]
