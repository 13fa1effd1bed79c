"""PostgreSQL kills the workers' connections (pg_terminate_backend: a failover, an admin, a pooler restart)
twice during delivery: the workers reconnect by themselves, nothing is lost, and nothing is sent twice (an
outcome whose write the kill cut short is written again on a new connection)."""
import pytest

from notifier.models import Delivery, DeliveryStatus
from tests.chaos.conftest import (CHAOS_SCALE, accepted_ids, all_terminal, app_name, seed_email_notifications,
                                  settle, terminal_ids, terminate_backends)
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


def claimed_ids() -> set[str]:
    return {str(i) for i in Delivery.objects.filter(status=DeliveryStatus.SENDING).values_list("id", flat=True)}


def test_workers_whose_database_connections_are_killed_twice_recover_and_lose_nothing(
    own_redis, order_type, sendgrid, chaos_env, chaos_report, start_worker, start_beat
):
    workers_app = app_name("workers")
    # Persistent connections (DB_CONN_MAX_AGE) are the hard case: a worker's next task finds its own dead.
    env = {**chaos_env, "CELERY_BROKER_URL": own_redis.url, "REDIS_URL": own_redis.url, "DB_CONN_MAX_AGE": 60}
    seed_email_notifications(order_type, CHAOS_SCALE)
    start_beat(**env)
    start_worker(PGAPPNAME=workers_app, **env)
    start_worker(PGAPPNAME=workers_app, **env)

    claimed_at_a_kill = set()
    for share in (3, 2):  # at a third and at half of the run
        wait_until(lambda: len(sendgrid.calls_per_delivery()) >= CHAOS_SCALE // share, timeout=300)
        assert terminate_backends(workers_app) >= 1  # only these workers' sessions, on this test database
        claimed_at_a_kill |= claimed_ids()  # claims committed before the kill; their sends may be cut short
    wait_until(all_terminal, timeout=300, interval=1)

    duplicates = settle(chaos_report, sendgrid)
    chaos_report.in_flight_at_fault = len(claimed_at_a_kill)
    chaos_report.notes.append("2 x pg_terminate_backend")
    assert accepted_ids() == terminal_ids()  # 0 lost
    assert set(sendgrid.calls_per_delivery()) == {str(i) for i in Delivery.objects.values_list("id", flat=True)}
    assert not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists()
    assert duplicates == {}, f"{len(duplicates)} sent twice, of {len(claimed_at_a_kill)} claimed at a kill"
