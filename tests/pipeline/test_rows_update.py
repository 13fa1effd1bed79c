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
