"""Two beat processes at once (a second one started by mistake, or two during a deploy): each quiet-hour
hold and each scheduled send is released, and reaches the provider, exactly once."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import Delivery, DeliveryStatus, NotificationStatus
from tests.chaos.conftest import (CHAOS_SCALE, accepted_ids, all_terminal, seed_email_notifications, settle,
                                  terminal_ids)
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


def test_two_beats_release_each_hold_and_each_scheduled_send_exactly_once(
    own_redis, order_type, sendgrid, chaos_env, chaos_report, start_worker, start_beat
):
    count = CHAOS_SCALE // 4
    env = {**chaos_env, "CELERY_BROKER_URL": own_redis.url, "REDIS_URL": own_redis.url,
           "NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS": 1}
    now = timezone.now()
    in_quiet_hours = {"timezone": "UTC", "quiet_hours_start": (now - timedelta(hours=1)).time(),
                      "quiet_hours_end": (now + timedelta(hours=2)).time()}
    held = seed_email_notifications(order_type, count, recipient_fields=in_quiet_hours, priority="medium")
    send_at = now + timedelta(seconds=8)  # after both beats have ticked a few times
    scheduled = seed_email_notifications(order_type, count, status=NotificationStatus.SCHEDULED,
                                         schedule_at=send_at, due_at=send_at)
    beats = [start_beat(**env), start_beat(**env)]
    start_worker(**env)
    wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.HELD).count() == count, timeout=60)

    # Time travel: every quiet-hour window ends now; only the beats' next ticks may release the holds.
    Delivery.objects.filter(status=DeliveryStatus.HELD).update(next_attempt_at=timezone.now())
    wait_until(all_terminal, timeout=120, interval=0.5)

    duplicates = settle(chaos_report, sendgrid)
    chaos_report.notes.append(f"{count} holds, {count} scheduled sends, 2 beats")
    for beat in beats:  # both beats really ran both schedules
        assert "Sending due task release-holds (notifier.release_holds)" in beat.output()
        assert "Sending due task sweep (notifier.sweep)" in beat.output()
    assert accepted_ids() == terminal_ids()  # 0 lost
    assert len(accepted_ids()) == len(held) + len(scheduled)
    calls = sendgrid.calls_per_delivery()
    assert set(calls) == {str(i) for i in Delivery.objects.values_list("id", flat=True)}
    assert duplicates == {}  # each hold and each scheduled send reached the provider once
    assert set(Delivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.SENT, 1)}
