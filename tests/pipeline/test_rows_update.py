import pytest
from django.db import DataError
from django.utils import timezone

from notifier.db import rows_update
from notifier.models import Notification, NotificationStatus
from tests.conftest import make_order_type, make_reachable_user, make_producer


def test_it_writes_the_named_fields_of_each_row_and_leaves_the_others(db):
    producer, _ = make_producer()
    notification_type, recipient = make_order_type(), make_reachable_user()
    first, second = (
        Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                    priority="high", due_at=timezone.now(), data={"order_id": str(i)})
        for i in (1, 2)
    )
    first.status, first.decisions = NotificationStatus.DELIVERED, [{"channel": "push", "decision": "queued"}]
    second.status, second.decisions = NotificationStatus.FAILED, []
    first.data = {"changed": "but not named"}

    rows_update([first, second], ["status", "decisions"])

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.decisions) == ("delivered", [{"channel": "push", "decision": "queued"}])
    assert first.data == {"order_id": "1"}
    assert (second.status, second.decisions) == ("failed", [])


def test_nothing_to_write_runs_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        rows_update([], ["status"])


def test_a_row_that_no_longer_holds_the_where_values_is_left_as_it_is(db):
    producer, _ = make_producer()
    notification_type, recipient = make_order_type(), make_reachable_user()
    kept, moved_on = (
        Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                    priority="high", due_at=timezone.now(), data={}, status="processing")
        for _ in range(2)
    )
    Notification.objects.filter(id=moved_on.id).update(status="cancelled")  # changed since it was read
    kept.status = moved_on.status = NotificationStatus.DELIVERED

    written = rows_update([kept, moved_on], ["status"], where={"status": "processing"})

    assert written == {kept.id}
    assert Notification.objects.get(id=moved_on.id).status == "cancelled"
    assert Notification.objects.get(id=kept.id).status == "delivered"


def test_a_value_too_long_for_its_column_is_refused_not_cut(db):
    producer, _ = make_producer()
    notification = Notification.objects.create(producer=producer, type=make_order_type(),
                                               recipient=make_reachable_user(), priority="high",
                                               due_at=timezone.now(), data={})
    notification.collapse_key = "k" * 65  # the column holds 64

    with pytest.raises(DataError):
        rows_update([notification], ["collapse_key"])


def test_a_column_with_one_value_for_every_row_and_one_that_varies_are_both_written(db):
    producer, _ = make_producer()
    notification_type, recipient = make_order_type(), make_reachable_user()
    rows = [Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                        priority="high", due_at=timezone.now()) for _ in range(3)]
    completed = [timezone.now(), None, timezone.now()]
    for row, at in zip(rows, completed):
        row.status, row.completed_at, row.escalate_at = NotificationStatus.DELIVERED, at, None  # same, varies, same

    assert rows_update(rows, ["status", "completed_at", "escalate_at"]) == {row.id for row in rows}

    stored = {n.id: n for n in Notification.objects.filter(id__in=[row.id for row in rows])}
    assert [(stored[row.id].status, stored[row.id].completed_at, stored[row.id].escalate_at) for row in rows] == [
        ("delivered", at, None) for at in completed]
