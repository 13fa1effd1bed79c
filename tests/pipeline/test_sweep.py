"""The sweeper wakes the route queue for accepted notifications of any age: a wake-up is deduplicated by
its flag, so there is no grace period to wait out after a lost one."""
import pytest

from notifier.pipeline.sweep import wake_due_queues
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


def test_a_notification_accepted_this_instant_whose_wake_up_was_lost_is_woken_by_the_next_sweep(
    order_type, reachable_user, clean_redis
):
    make_notification(order_type, reachable_user)  # accepted, due now; no wake-up was published

    woken = wake_due_queues()
    again = wake_due_queues()

    assert "route.high" in woken
    assert again == woken and clean_redis.llen("route.high") == 1  # still one message: the flag holds
