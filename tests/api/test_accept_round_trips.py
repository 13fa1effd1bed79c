"""What one POST /api/v1/notifications costs in round trips, counted the way the process makes them (issue 14):
SQL statements as Django sends them, the connection's health check (Django sends it beside its cursor
wrappers, so CaptureQueriesContext misses it), and Redis round trips, in every thread of the process (the
wake-up's publisher thread too). The first request warms the process caches; the second is the steady state,
with a wake-up pending, as under load."""
import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from notifier.api import quota
from notifier.models import Notification, Recipient
from notifier.pipeline import wake
from notifier.pipeline.wake import FLAG_PREFIX, route_queue

pytestmark = pytest.mark.django_db(transaction=True)  # so that the wake-up runs after commit, as in production

BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}}


class RoundTrips:
    def __init__(self, monkeypatch):
        self.redis: list[str] = []
        self.health_checks = 0
        original_send = redis.connection.AbstractConnection.send_packed_command
        wrapper_class = type(connections["default"])
        original_usable = wrapper_class.is_usable

        def send_packed_command(conn, command, check_health=True):
            first = command[0] if isinstance(command, list) else command
            self.redis.append(bytes(first).split(b"\r\n")[2].decode())  # the command's name
            return original_send(conn, command, check_health)

        def is_usable(wrapper):
            self.health_checks += 1
            return original_usable(wrapper)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send_packed_command)
        monkeypatch.setattr(wrapper_class, "is_usable", is_usable)


def count(api, monkeypatch, body):
    trips = RoundTrips(monkeypatch)
    # What a server's request_started does (close_old_connections), which the test client leaves out.
    connection.close_if_unusable_or_obsolete()
    with CaptureQueriesContext(connection) as sql:
        response = api.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return [q["sql"] for q in sql.captured_queries], trips


@pytest.fixture
def warm(api, order_type, reachable_user, clean_redis):
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202
    assert clean_redis.exists(FLAG_PREFIX + route_queue("high"))  # the first request's wake-up is pending


def test_a_single_recipient_post_is_one_statement_and_one_redis_round_trip(api, warm, monkeypatch):
    statements, trips = count(api, monkeypatch, BODY)

    # The recipient found by user id and the notification inserted: one statement. The wake-up flag: one
    # Redis round trip (set after commit); the quota is spent from the lease the first request took.
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO")
    # CONN_HEALTH_CHECKS: a check when the request reuses a connection, none on a new one (an earlier test
    # may leave the connection obsolete, and the request then opens another); it sends nothing
    # (tests/test_database_health_check.py).
    assert trips.health_checks <= 1
    assert trips.redis == ["SET"]
    assert Notification.objects.count() == 2


def test_a_new_user_costs_a_second_statement_that_creates_it(api, warm, monkeypatch):
    statements, trips = count(api, monkeypatch, {**BODY, "user_id": "u_new"})

    # The first finds no such user and inserts nothing; the second creates the user and inserts.
    assert [s.split()[0] for s in statements] == ["INSERT", "WITH"]
    recipient = Recipient.objects.get(user_id="u_new")
    assert Notification.objects.get(recipient=recipient).data == {"order_id": "789"}


def test_1000_recipients_are_one_statement_too(api, warm, monkeypatch):
    body = {"type": "order_shipped", "data": {"order_id": "1"},
            "recipients": [{"user_id": f"u_{n}"} for n in range(1000)]}

    statements, trips = count(api, monkeypatch, body)

    assert len(statements) == 1
    assert trips.redis == ["SET"]
    assert Notification.objects.count() == 1001


def test_a_request_after_its_process_spent_the_quota_lease_takes_the_next_one(api, warm, monkeypatch):
    for _ in range(quota.lease_size(settings.NOTIFIER_PRODUCER_QUOTA_REQUESTS) - 1):  # the rest of the lease
        assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202

    statements, trips = count(api, monkeypatch, BODY)

    assert trips.redis == ["EVALSHA", "SET"]


def test_a_wake_up_found_pending_is_not_handed_to_the_publisher_thread(api, warm, monkeypatch):
    def no_publisher():
        raise AssertionError("the flag was pending: nothing to publish")

    monkeypatch.setattr(wake, "_publisher", no_publisher)

    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202


def test_a_user_created_by_a_concurrent_request_is_found_by_a_second_try(api, warm, monkeypatch):
    created, release = threading.Event(), threading.Event()

    def concurrent_request():
        try:
            with transaction.atomic():
                Recipient.objects.create(user_id="u_race")
                created.set()
                release.wait(10)
        finally:
            connections.close_all()

    other = threading.Thread(target=concurrent_request)
    other.start()
    created.wait(10)
    # The statement's snapshot misses the other's row; its INSERT waits for it, then conflicts: nothing
    # is stored, and the statement runs again, finding it.
    threading.Thread(target=release_once_a_statement_waits_for_a_lock, args=(release,)).start()
    statements, _ = count(api, monkeypatch, {**BODY, "user_id": "u_race"})
    other.join()

    assert [s.split()[0] for s in statements] == ["INSERT", "WITH", "WITH"]
    assert Recipient.objects.filter(user_id="u_race").count() == 1
    assert Notification.objects.filter(recipient__user_id="u_race").count() == 1


def release_once_a_statement_waits_for_a_lock(release):
    try:
        with connection.cursor() as cursor:
            for _ in range(200):
                cursor.execute("SELECT count(*) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
    finally:
        release.set()
        connections.close_all()

