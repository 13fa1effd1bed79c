"""Idempotency under real concurrency, and quiet hours through real workers and a real beat."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from django.utils import timezone

from notifier.models import Delivery, IdempotencyKey, Notification
from notifier_project.celery import app as celery_app
from tests.e2e.conftest import API_SERVER, BIN, Process, free_port, process_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def threaded_api(tmp_path):
    """The API's server with 4 processes × 8 threads: up to 32 requests in flight at once."""
    port = free_port()
    server = Process(
        [str(BIN / "granian"), *API_SERVER, "--host", "127.0.0.1", "--port", str(port), "--workers", "4",
         "--blocking-threads", "8"],
        process_env(), tmp_path / "api.log", ready_text="Spawning worker",
    )
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(url + "/healthz", timeout=1).status_code
        except requests.RequestException:
            return False

    try:
        wait_until(answers, timeout=15)
        yield url
    finally:
        server.stop()


def test_1000_concurrent_requests_with_one_idempotency_key_create_one_notification(
    producer, order_type, reachable_user, threaded_api
):
    key = f"order-{uuid.uuid4()}"
    body = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}
    headers = {"Authorization": f"Bearer {producer.key}", "Idempotency-Key": key}

    def send(_):
        with requests.Session() as session:
            response = session.post(f"{threaded_api}/api/v1/notifications", json=body, headers=headers, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(send, range(1000)))

    statuses = {status for status, _ in answers}
    assert statuses <= {202, 409}, statuses
    bodies = [answer for status, answer in answers if status == 202]
    ids = {tuple(n["id"] for n in answer["notifications"]) for answer in bodies}
    assert len(ids) == 1  # every 202 is the original answer
    assert Notification.objects.count() == 1
    assert IdempotencyKey.objects.get(key=key).response["notifications"][0]["id"] == ids.pop()[0]


def test_a_notification_in_quiet_hours_is_held_by_a_real_worker_and_sent_after_a_beat_tick(
    api, order_type, reachable_user, start_worker
):
    start_worker()
    local = timezone.now().astimezone(ZoneInfo("Asia/Karachi"))
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=2)).strftime("%H:%M"), "timezone": "Asia/Karachi"}
    assert api.patch("/api/v1/users/u_42/notification-preferences", {"quiet_hours": window},
                     format="json").status_code == 200

    notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "5"}, "priority": "medium",
                                                         "channels": ["email", "sms"]},
                               format="json").json()["notifications"][0]["id"]

    held = wait_until(lambda: (b := api.get(f"/api/v1/notifications/{notification_id}").json())["deliveries"] and b)
    assert {d["status"] for d in held["deliveries"]} == {"held"}
    assert {d["status_reason"] for d in held["deliveries"]} == {
        f"held for quiet hours until {window['end']} Asia/Karachi"}

    # Time travel: the window ends now. Beat's next tick publishes the release task; a worker runs it.
    Delivery.objects.filter(notification_id=notification_id).update(next_attempt_at=timezone.now())
    celery_app.send_task("notifier.release_holds")

    wait_until(lambda: Notification.objects.get(id=notification_id).status == "delivered")
    assert set(Delivery.objects.filter(notification_id=notification_id).values_list("attempts", flat=True)) == {1}


def test_a_real_beat_releases_a_held_delivery_through_a_real_worker(api, order_type, reachable_user, start_worker,
                                                                   start_beat):
    start_worker()
    local = timezone.now().astimezone(ZoneInfo("Asia/Karachi"))
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=2)).strftime("%H:%M"), "timezone": "Asia/Karachi"}
    api.patch("/api/v1/users/u_42/notification-preferences", {"quiet_hours": window}, format="json")
    notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "6"}, "priority": "medium",
                                                         "channels": ["sms"]},
                               format="json").json()["notifications"][0]["id"]
    wait_until(lambda: Delivery.objects.filter(notification_id=notification_id, status="held").exists())
    beat = start_beat(NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS=1)
    try:
        time.sleep(3)  # ticks while the hold's moment has not come release nothing
        assert Delivery.objects.get(notification_id=notification_id).status == "held"

        # Time travel: the window ends now; nothing but beat's next tick may release it.
        Delivery.objects.filter(notification_id=notification_id).update(next_attempt_at=timezone.now())

        wait_until(lambda: Notification.objects.get(id=notification_id).status == "delivered", timeout=20)
    finally:
        beat.stop()
    assert "Sending due task release-holds (notifier.release_holds)" in beat.output()
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
