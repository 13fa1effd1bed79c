"""Outages of Redis and PostgreSQL under a real granian: requests keep their deadline, nothing accepted is
lost, and the service recovers by itself."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from notifier.models import Notification
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVER_ARGS = ("--workers", "1", "--blocking-threads", "16")
REDIS_BUDGET_SECONDS = 2  # NOTIFIER_REDIS_TIMEOUT_SECONDS' default
# What a request may take on top of its Redis budget here: queueing behind the threads the first requests
# hold, the insert, a loaded machine.
SLACK_SECONDS = 1


def notify_in_app(url, key, **fields):
    started = time.monotonic()
    response = requests.post(f"{url}/api/v1/notifications", headers={"Authorization": f"Bearer {key}"},
                             json={"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"},
                                   "channels": ["in_app"], **fields}, timeout=30)
    return started, time.monotonic() - started, response


def drive(url, key, per_second, seconds):
    """POST notifications at a steady rate from many client threads; returns (started, elapsed, response)."""
    with ThreadPoolExecutor(max_workers=100) as pool:
        futures = []
        begin = time.monotonic()
        for i in range(int(per_second * seconds)):
            time.sleep(max(0.0, begin + i / per_second - time.monotonic()))
            futures.append(pool.submit(notify_in_app, url, key))
        return [future.result() for future in futures]


def test_a_hanging_redis_holds_no_request_past_its_deadline_and_loses_nothing(
    producer, order_type, reachable_user, own_redis, start_api, start_worker
):
    api = start_api(SERVER_ARGS, REDIS_URL=own_redis.url, CELERY_BROKER_URL=own_redis.url)
    assert notify_in_app(api.url, producer.key)[2].status_code == 202

    own_redis.hang()
    hung_at = time.monotonic()
    answers = drive(api.url, producer.key, per_second=30, seconds=6)
    health_started = time.monotonic()
    health = requests.get(f"{api.url}/healthz", timeout=30)
    health_seconds = time.monotonic() - health_started

    assert [r.status_code for _, _, r in answers] == [202] * len(answers)
    slowest = max(elapsed for _, elapsed, _ in answers)
    assert slowest < REDIS_BUDGET_SECONDS + SLACK_SECONDS, f"a request took {slowest:.1f} s"
    # Once a call has timed out, the breaker is open and later requests do not ask Redis at all: a request
    # that did would wait out its budget on the hung server. Half the budget, not a fixed 0.5 s, tells the
    # two apart on a loaded CI machine (30 requests/s at 0.5–0.7 s each there, 20 ms on an idle one).
    later = [elapsed for started, elapsed, _ in answers if started - hung_at > REDIS_BUDGET_SECONDS + SLACK_SECONDS]
    assert later and max(later) < REDIS_BUDGET_SECONDS / 2, f"{len(later)} later requests, slowest {max(later):.2f} s"
    ids = [r.json()["notifications"][0]["id"] for _, _, r in answers]
    assert Notification.objects.filter(id__in=ids, status="accepted").count() == len(ids)  # stored, waiting
    assert health_seconds < REDIS_BUDGET_SECONDS, f"/healthz took {health_seconds:.1f} s"
    assert health.status_code == 503
    assert health.json()["checks"]["database"] == "ok"
    assert health.json()["checks"]["broker"].startswith("down")

    # Redis is back: within the breaker's window the API asks it again, and a worker on it routes and
    # delivers every notification accepted during the outage (the rows are the queue: one wake-up drains them).
    own_redis.resume()
    start_worker(REDIS_URL=own_redis.url, CELERY_BROKER_URL=own_redis.url)
    wait_until(lambda: requests.get(f"{api.url}/healthz", timeout=5).status_code == 200, timeout=15)
    started, elapsed, response = notify_in_app(api.url, producer.key)
    assert response.status_code == 202 and elapsed < 0.5
    ids.append(response.json()["notifications"][0]["id"])
    wait_until(lambda: Notification.objects.filter(id__in=ids, status="delivered").count() == len(ids), timeout=60)


def test_api_threads_whose_database_connections_were_terminated_answer_the_next_requests(
    producer, order_type, reachable_user, start_api
):
    app_name = f"notifier-e2e-{connection.settings_dict['NAME']}"
    api = start_api(SERVER_ARGS, DB_CONN_MAX_AGE=60, PGAPPNAME=app_name)

    def notify(index):
        # With an idempotency key the request's first query is in a transaction (producer and type are
        # cached), which must not begin on a dead connection either.
        fields = {"idempotency_key": f"{phase}-{index}"} if index % 2 else {}
        return notify_in_app(api.url, producer.key, **fields)[2]

    with ThreadPoolExecutor(max_workers=16) as pool:
        phase = "warm"
        assert {r.status_code for r in pool.map(notify, range(64))} == {202}
        with connection.cursor() as cursor:  # only this server's backends, on this test database
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND application_name = %s", [app_name])
            assert cursor.fetchone()[0] >= 1

        phase = "after"
        answers = list(pool.map(notify, range(64)))

    assert [(r.status_code, r.headers["Content-Type"]) for r in answers] == [(202, "application/json")] * 64
