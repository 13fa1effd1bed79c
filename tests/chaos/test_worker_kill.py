"""kill -9 a worker in the middle of CHAOS_SCALE deliveries, restart it: nothing is lost, and only the
sends in flight at the kill go out twice. On the Redis broker and on RabbitMQ (quorum queues)."""
import socket
import subprocess
import uuid

import pytest

from notifier.models import Delivery, DeliveryStatus
from notifier.pipeline.dispatch import RECORD_GROUP_SIZE
from notifier.providers.sendgrid import SendGridProvider
from tests.chaos.conftest import (CHAOS_SCALE, accepted_ids, all_terminal, app_name, backends, calls_once_quiet,
                                  seed_email_notifications, settle, terminal_ids)
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
WORKER_PROCESSES = 2


@pytest.fixture
def rabbitmq_vhost():
    """A vhost of this test's own on the machine's RabbitMQ (guest may use it), deleted afterwards, so
    concurrent runs never share a queue."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.fail("RabbitMQ is not running at 127.0.0.1:5672: start it (rabbitmq-server -detached); .ci/run does")
    vhost = f"notifier-chaos-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True, timeout=60)
    yield f"{RABBITMQ}/{vhost}"
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=True, capture_output=True, timeout=60)


def queue_types(broker_url: str) -> dict[str, str]:
    vhost = broker_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "type"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return dict(line.split() for line in listed.splitlines() if line.strip())


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request, own_redis):
    if request.param == "rabbitmq":
        return request.getfixturevalue("rabbitmq_vhost")
    return own_redis.url


def test_a_worker_killed_mid_run_loses_nothing_and_resends_only_what_was_in_flight(
    broker_url, own_redis, order_type, sendgrid, chaos_env, chaos_report, start_worker, start_beat
):
    env = {**chaos_env, "CELERY_BROKER_URL": broker_url, "REDIS_URL": own_redis.url}
    seed_email_notifications(order_type, CHAOS_SCALE)
    doomed_app = app_name("doomed")
    start_beat(**env)  # its sweeper wakes the queues with due rows, and later gives back the dead worker's claims
    doomed = start_worker(concurrency=WORKER_PROCESSES, PGAPPNAME=doomed_app, **env)
    wait_until(lambda: len(sendgrid.calls_per_delivery()) >= CHAOS_SCALE // 2, timeout=300)

    doomed.kill()  # SIGKILL to the worker and its pool: no chance to record anything

    # Its sessions end (rolling back outcomes it was writing) once PostgreSQL sees them gone. No other
    # worker runs yet: whatever the fake has received by then, the killed one sent.
    wait_until(lambda: backends(doomed_app) == 0)
    called_before_the_kill = calls_once_quiet(sendgrid)
    recorded_before_the_kill = {str(i) for i in Delivery.objects.filter(status=DeliveryStatus.SENT)
                                .values_list("id", flat=True)}
    in_flight_at_the_kill = called_before_the_kill - recorded_before_the_kill
    start_worker(**env)
    wait_until(all_terminal, timeout=300, interval=1)

    duplicates = settle(chaos_report, sendgrid)
    chaos_report.in_flight_at_fault = len(in_flight_at_the_kill)
    chaos_report.notes.append(f"broker {broker_url.split(':')[0]}")
    assert 0 < len(recorded_before_the_kill) < CHAOS_SCALE  # it died mid-run, with outcomes recorded
    assert accepted_ids() == terminal_ids()  # 0 lost
    assert set(sendgrid.calls_per_delivery()) == {str(i) for i in Delivery.objects.values_list("id", flat=True)}
    assert not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists()
    assert set(duplicates) <= in_flight_at_the_kill, "sent twice, yet not in flight at the kill"
    assert max(duplicates.values(), default=1) == 1  # in flight at one kill: sent at most twice
    # Bounded: per process, the sends in flight and the one group of outcomes not yet recorded.
    assert len(duplicates) <= WORKER_PROCESSES * (SendGridProvider.batch_concurrency + RECORD_GROUP_SIZE)
    if broker_url.startswith("amqp"):
        assert queue_types(broker_url)["email.high"] == "quorum"
