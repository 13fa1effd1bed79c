"""rows_insert: COPY for new rows, and with ignore_conflicts one INSERT … ON CONFLICT DO NOTHING that
leaves out what is stored already, as bulk_create(ignore_conflicts=True) does."""
import pytest
from django.db import DataError
from django.utils import timezone

from notifier.db import row_new, rows_insert, rows_write_isolated
from notifier.models import InboxItem, Notification
from tests.conftest import make_order_type, make_producer, make_reachable_user


@pytest.fixture
def notifications(db):
    producer, _ = make_producer()
    notification_type, recipient = make_order_type(), make_reachable_user()
    return [Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                        priority="low", due_at=timezone.now(), data={"order_id": str(i)})
            for i in range(3)]


def item(notification, title="Shipped") -> InboxItem:
    return row_new(InboxItem, recipient_id=notification.recipient_id, notification_id=notification.id, title=title,
                   data={"order_id": notification.data["order_id"], "nested": {"list": [1, 2]}})


def test_it_stores_every_field_of_new_rows(notifications):
    rows_insert(InboxItem, [item(n) for n in notifications], ignore_conflicts=True)

    stored = InboxItem.objects.order_by("id")
    assert [(i.notification_id, i.title, i.data) for i in stored] == [
        (n.id, "Shipped", {"order_id": n.data["order_id"], "nested": {"list": [1, 2]}}) for n in notifications]
    assert all(i.created_at is not None and i.read_at is None for i in stored)


def test_with_ignore_conflicts_a_row_stored_already_is_left_out_and_the_others_are_written(notifications):
    rows_insert(InboxItem, [item(notifications[0], title="first")], ignore_conflicts=True)

    rows_insert(InboxItem, [item(n, title="second") for n in notifications], ignore_conflicts=True)

    assert dict(InboxItem.objects.values_list("notification_id", "title")) == {
        notifications[0].id: "first", notifications[1].id: "second", notifications[2].id: "second"}


def test_without_it_a_conflict_raises(notifications):
    from django.db import IntegrityError, transaction

    rows_insert(InboxItem, [item(notifications[0])])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(InboxItem, [item(notifications[0])])


def test_a_value_too_long_for_its_column_is_refused_not_cut_and_isolated_alone(notifications):
    rows = [item(notifications[0]), item(notifications[1], title="x" * 256), item(notifications[2])]

    refused = rows_write_isolated(rows, lambda batch: rows_insert(InboxItem, batch, ignore_conflicts=True))

    assert list(refused) == [1] and isinstance(refused[1], DataError)
    assert set(InboxItem.objects.values_list("notification_id", flat=True)) == {notifications[0].id,
                                                                                notifications[2].id}


def test_copy_refuses_a_value_too_long_with_djangos_error_so_a_batch_can_isolate_it(notifications):
    rows = [item(notifications[0]), item(notifications[1], title="x" * 256)]

    refused = rows_write_isolated(rows, lambda batch: rows_insert(InboxItem, batch))

    assert list(refused) == [1] and isinstance(refused[1], DataError)
    assert list(InboxItem.objects.values_list("notification_id", flat=True)) == [notifications[0].id]


@pytest.mark.parametrize("ignore_conflicts", [False, True])
def test_json_with_the_characters_copy_and_json_escape_is_stored_as_it_was(notifications, ignore_conflicts):
    data = {"text": 'tab\there\nnew line \\ backslash "quoted" \r é 🚀 \u2028', "n": [None, 2 ** 70, 1.5]}
    rows = [item(n) for n in notifications]
    for row in rows:
        row.data = data

    rows_insert(InboxItem, rows, ignore_conflicts=ignore_conflicts)

    assert [i.data for i in InboxItem.objects.all()] == [data] * 3
