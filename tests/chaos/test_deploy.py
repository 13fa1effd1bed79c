"""SIGTERM to a busy worker, as a deploy sends it, while another worker runs: the work it finished stays
done, what it had in hand is finished (or given back) and sent once, nothing is lost."""
import pytest

from notifier.models import Delivery, DeliveryStatus
from tests.chaos.conftest import (CHAOS_SCALE, accepted_ids, all_terminal, seed_email_notifications, settle,
                                  terminal_ids, warm_shutdown)
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


def test_a_worker_stopped_by_a_deploy_mid_run_sends_everything_exactly_once(
    own_redis, order_type, sendgrid, chaos_env, chaos_report, start_worker, start_beat
):
    env = {**chaos_env, "CELERY_BROKER_URL": own_redis.url, "REDIS_URL": own_redis.url}
    seed_email_notifications(order_type, CHAOS_SCALE)
    start_beat(**env)
    leaving = start_worker(**env)
    staying = start_worker(**env)
    wait_until(lambda: len(sendgrid.calls_per_delivery()) >= CHAOS_SCALE // 3, timeout=300)
    claimed_at_the_signal = Delivery.objects.filter(status=DeliveryStatus.SENDING).count()
    sent_at_the_signal = Delivery.objects.filter(status=DeliveryStatus.SENT).count()

    assert warm_shutdown(leaving) == 0  # it finished its batches and left

    wait_until(all_terminal, timeout=300, interval=1)

    duplicates = settle(chaos_report, sendgrid)
    chaos_report.in_flight_at_fault = claimed_at_the_signal
    chaos_report.notes.append("SIGTERM")
    assert "Warm shutdown" in leaving.output()
    assert 0 < sent_at_the_signal < CHAOS_SCALE and claimed_at_the_signal  # a deploy mid-run
    assert accepted_ids() == terminal_ids()  # 0 lost
    assert set(sendgrid.calls_per_delivery()) == {str(i) for i in Delivery.objects.values_list("id", flat=True)}
    assert duplicates == {}  # a warm shutdown sends nothing twice, in flight or not
    assert set(Delivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.SENT, 1)}
