"""The sweeper wakes the route queue for accepted notifications of any age: a wake-up is deduplicated by
its flag, so there is no grace period to wait out after a lost one; and a flag left by a lost message does
not hold rows back for longer than a sweep interval."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import Delivery
from notifier.pipeline.route import route_due
from notifier.pipeline.sweep import wake_due_queues
from notifier.pipeline.wake import FLAG_PREFIX
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


def test_rows_due_for_longer_than_a_sweep_interval_are_woken_even_though_a_lost_wake_up_left_its_flag(
    order_type, reachable_user, clean_redis
):
    make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    overdue = timezone.now() - timedelta(minutes=1)  # many sweep intervals
    Delivery.objects.filter(channel="email").update(next_attempt_at=overdue)
    make_notification(order_type, reachable_user, due_at=overdue)
    clean_redis.flushdb()
    # The wake-ups were published and lost (a broker restart, say); their flags are still set.
    clean_redis.set(FLAG_PREFIX + "email.high", "1", ex=30)
    clean_redis.set(FLAG_PREFIX + "route.high", "1", ex=30)

    woken = wake_due_queues()

    assert sorted(woken) == ["email.high", "route.high"]
    assert clean_redis.llen("email.high") == 1 and clean_redis.llen("route.high") == 1

