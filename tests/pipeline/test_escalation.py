"""Escalation when unseen: sent on the next channels only if the in-app item is still unread after the delay."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.inbox import inbox_item_update, inbox_mark_all_read
from notifier.models import Delivery, Notification, NotificationStatus, Recipient
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.escalation import release_due_escalations
from notifier.pipeline.route import route_due
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

ESCALATE = {"channels": ["email"], "if_unread_after_seconds": 600}


def escalating(order_type, recipient, **fields):
    notification = make_notification(order_type, recipient, channels=["in_app"], escalation=ESCALATE, **fields)
    route_due("high")
    deliver_due("in_app", "high")
    notification.refresh_from_db()
    return notification


def time_travel_to_escalation(notifications=None):
    """The delay has passed: what beat's next tick finds due."""
    rows = Notification.objects.filter(escalate_at__isnull=False)
    if notifications is not None:
        rows = rows.filter(id__in=[n.id for n in notifications])
    rows.update(escalate_at=timezone.now() - timedelta(seconds=1))


def test_routing_sets_the_escalation_moment_and_the_notification_stays_open(order_type, reachable_user):
    before = timezone.now()

    notification = escalating(order_type, reachable_user)

    assert before + timedelta(seconds=600) <= notification.escalate_at <= timezone.now() + timedelta(seconds=600)
    (pending,) = [d for d in notification.decisions if d.get("step") == "escalation"]
    assert (pending["channel"], pending["decision"]) == ("email", "escalation_pending")
    assert pending["reason"].startswith("escalation: sent if the in-app item is still unread at ")
    assert notification.status == NotificationStatus.PROCESSING  # the in-app item is delivered, but it waits
    assert [d.channel for d in notification.deliveries.all()] == ["in_app"]


def test_an_unread_item_escalates_when_beat_releases_it_after_the_delay(order_type, reachable_user):
    notification = escalating(order_type, reachable_user)
    assert release_due_escalations() == 0  # not due yet: nothing happens

    time_travel_to_escalation()
    assert release_due_escalations() == 1
    assert release_due_escalations() == 0  # released once

    notification.refresh_from_db()
    assert notification.escalate_at is None
    sent = notification.decisions[-1]
    assert (sent["channel"], sent["decision"], sent["step"]) == ("email", "queued", "escalation")
    assert sent["reason"] == "escalation: the in-app item was unread after 600 s"
    deliver_due("email", "high")
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DELIVERED
    assert sorted(d.channel for d in notification.deliveries.all()) == ["email", "in_app"]


def test_reading_the_item_cancels_the_escalation_and_closes_the_notification(order_type, reachable_user):
    notification = escalating(order_type, reachable_user)

    inbox_item_update(reachable_user, notification.id, read=True)

    notification.refresh_from_db()
    assert notification.escalate_at is None
    assert notification.status == NotificationStatus.DELIVERED
    cancelled = notification.decisions[-1]
    assert (cancelled["channel"], cancelled["decision"], cancelled["reason"]) == (
        "email", "suppressed", "read before escalation")
    time_travel_to_escalation()
    assert release_due_escalations() == 0
    assert [d.channel for d in notification.deliveries.all()] == ["in_app"]


def test_an_item_read_without_the_cancel_is_not_escalated_by_the_release(order_type, reachable_user):
    notification = escalating(order_type, reachable_user)
    notification.inbox_item.__class__.objects.filter(notification=notification).update(read_at=timezone.now())
    time_travel_to_escalation()

    assert release_due_escalations() == 0

    notification.refresh_from_db()
    assert notification.decisions[-1]["reason"] == "read before escalation"
    assert notification.status == NotificationStatus.DELIVERED


def test_mark_all_read_cancels_every_pending_escalation_in_a_fixed_number_of_queries(
    order_type, reachable_user, django_assert_max_num_queries
):
    notifications = [make_notification(order_type, reachable_user, channels=["in_app"], escalation=ESCALATE,
                                       data={"order_id": str(i)}) for i in range(8)]
    route_due("high")
    deliver_due("in_app", "high")

    # 8 for reading and the escalations, 5 for opening their in-app deliveries (notifier/inbox.py).
    with django_assert_max_num_queries(13):
        assert inbox_mark_all_read(reachable_user) == 8

    time_travel_to_escalation()
    assert release_due_escalations() == 0
    for notification in notifications:
        notification.refresh_from_db()
        assert notification.escalate_at is None and notification.status == NotificationStatus.DELIVERED
    assert not Delivery.objects.filter(channel="email").exists()


def test_mark_all_read_leaves_another_users_escalation_pending(order_type, reachable_user):
    other = Recipient.objects.create(user_id="u_other", email="o@example.com")
    mine = escalating(order_type, reachable_user)
    theirs = escalating(order_type, other)

    inbox_mark_all_read(reachable_user)

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.escalate_at is None and theirs.escalate_at is not None


def test_the_escalation_follows_the_users_preferences_when_it_is_sent(order_type, reachable_user):
    notification = escalating(order_type, reachable_user)
    Recipient.objects.filter(pk=reachable_user.pk).update(channel_preferences={"email": False})
    time_travel_to_escalation()

    release_due_escalations()

    notification.refresh_from_db()
    assert notification.decisions[-1]["decision"] == "suppressed"
    assert notification.status == NotificationStatus.DELIVERED  # the in-app item was; nothing else is left


def test_without_an_in_app_delivery_there_is_nothing_to_wait_on(order_type, reachable_user):
    Recipient.objects.filter(pk=reachable_user.pk).update(channel_preferences={"in_app": False})
    notification = make_notification(order_type, reachable_user, channels=["in_app", "push"], escalation=ESCALATE)

    route_due("high")

    notification.refresh_from_db()
    assert notification.escalate_at is None
    assert notification.decisions[-1]["reason"] == "escalation: no in-app item to wait on (see the in_app decision)"


def test_a_cancelled_notification_is_not_escalated(order_type, reachable_user):
    notification = escalating(order_type, reachable_user)
    Notification.objects.filter(id=notification.id).update(status=NotificationStatus.CANCELLED)
    time_travel_to_escalation()

    assert release_due_escalations() == 0

    notification.refresh_from_db()
    assert notification.escalate_at is None
    assert not Delivery.objects.filter(channel="email").exists()
