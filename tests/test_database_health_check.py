"""The health check of a kept database connection (notifier/postgresql/base.py): no round trip while the
server holds the connection, and a connection the server has ended is replaced before the query that
would have failed on it."""
import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)  # a kept connection between requests is idle, not in a test's transaction


def last_statement_of(pid: int) -> str:
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        return other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def next_request_starts():
    # What each request's first query does before it runs (CONN_HEALTH_CHECKS).
    connection.health_check_done = False
    connection.close_if_health_check_failed()


def test_the_engine_is_notifiers_backend():
    assert connection.settings_dict["ENGINE"] == "notifier.postgresql"
    assert connection.vendor == "postgresql"


def test_a_kept_connection_the_server_holds_is_checked_without_a_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 42")
        pid = connection.connection.info.backend_pid

    next_request_starts()

    assert connection.connection is not None and connection.connection.info.backend_pid == pid
    assert last_statement_of(pid) == "SELECT 42"  # Django's own check would have sent SELECT 1


def test_a_connection_the_server_ended_is_replaced_before_the_next_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        for _ in range(100):  # until the server has ended it
            if not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                break

    next_request_starts()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        new_pid = cursor.fetchone()[0]

    assert new_pid != pid


def test_a_connection_with_something_to_read_is_asked_as_django_asks(monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("LISTEN notifier_health_check_test")
        pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("NOTIFY notifier_health_check_test")

    next_request_starts()

    assert connection.connection.info.backend_pid == pid  # still usable
    assert last_statement_of(pid) == "SELECT 1"
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")
