"""Two real concurrent requests with one idempotency key on the real API server: while the first is
held in flight (its transaction cannot insert its notification: another connection locks the table), the
second answers 409 at once instead of waiting on the key's unique index with a thread and a database
connection; once the first commits, the key replays the first answer (Stripe; IETF
draft-ietf-httpapi-idempotency-key-header)."""
import threading
import time

import psycopg
import pytest
import requests
from django.db import connection

from notifier.models import Notification
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVER_ARGS = ("--workers", "1", "--blocking-threads", "4")
BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}, "idempotency_key": "order-1"}


def side_connection() -> psycopg.Connection:
    database = connection.settings_dict
    return psycopg.connect(host=database["HOST"], port=database["PORT"], user=database["USER"],
                           dbname=database["NAME"])


def waiting_inserts(side) -> int:
    """Backends waiting on a lock to insert a notification: the first request, held in flight. Its statement
    inserts the notification of a known recipient (pipeline/accept.py, _single_insert)."""
    return side.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        [f'INSERT INTO "{Notification._meta.db_table}" %'],
    ).fetchone()[0]


def test_a_key_in_flight_is_a_409_at_once_and_replays_once_the_first_commits(producer, order_type, reachable_user,
                                                                               start_api):
    server = start_api(server_args=SERVER_ARGS)
    post = lambda: requests.post(f"{server.url}/api/v1/notifications", json=BODY, timeout=10,  # noqa: E731
                                 headers={"Authorization": f"Bearer {producer.key}"})
    blocker, watcher = side_connection(), side_connection()
    watcher.autocommit = True
    blocker.execute(f'LOCK TABLE "{Notification._meta.db_table}" IN SHARE MODE')
    first = {}
    in_flight = threading.Thread(target=lambda: first.setdefault("response", post()))
    try:
        in_flight.start()
        wait_until(lambda: waiting_inserts(watcher) == 1, timeout=10)

        started = time.monotonic()
        second = requests.post(f"{server.url}/api/v1/notifications", json=BODY, timeout=3,
                               headers={"Authorization": f"Bearer {producer.key}"})
        took = time.monotonic() - started
    finally:
        blocker.rollback()  # releases the table: the first request goes on and commits
        in_flight.join(10)
        blocker.close()
        watcher.close()

    assert second.status_code == 409, second.content
    assert second.json()["error"]["code"] == "idempotency_key_in_flight"
    assert took < 0.5
    assert first["response"].status_code == 202
    replay = post()
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first["response"].json()
    assert Notification.objects.count() == 1
