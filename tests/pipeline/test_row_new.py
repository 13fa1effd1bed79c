"""row_new builds the instances Model(**values) builds, faster: the same attributes, the same cached
relations, and rows the ORM saves as it saves its own."""
import uuid

import pytest
from django.utils import timezone

from notifier.db import row_new
from notifier.models import Delivery, DeliveryAttempt, DeliveryEvent, InboxItem, Notification
from tests.conftest import make_order_type, make_producer, make_reachable_user


def attributes(obj) -> dict:
    return {name: value for name, value in vars(obj).items() if name != "_state"}


@pytest.fixture
def notification(db):
    producer, _ = make_producer()
    return Notification.objects.create(producer=producer, type=make_order_type(), recipient=make_reachable_user(),
                                       priority="low", due_at=timezone.now(), data={"order_id": "1"})


def test_it_gives_every_field_the_value_django_would(notification):
    now = timezone.now()
    values = dict(notification=notification, channel="email", priority="low", target="ada@example.com",
                  next_attempt_at=now, status_reason="", device=None)

    fast, django_made = row_new(Delivery, **values), Delivery(**values)

    assert attributes(fast) == attributes(django_made)
    assert fast.content == {} and fast.content is not django_made.content  # a default made per row, not shared
    assert fast._state.adding and fast._state.db is None


def test_a_related_object_is_cached_so_reading_it_runs_no_query(notification, django_assert_num_queries):
    delivery = row_new(Delivery, notification=notification, channel="in_app")

    with django_assert_num_queries(0):
        assert delivery.notification is notification
        assert delivery.notification_id == notification.id


def test_callable_defaults_are_called_for_each_row(notification):
    first = row_new(Notification, producer=notification.producer, type=notification.type,
                    recipient=notification.recipient, priority="low", due_at=timezone.now())
    second = row_new(Notification, producer=notification.producer, type=notification.type,
                     recipient=notification.recipient, priority="low", due_at=timezone.now())

    assert isinstance(first.id, uuid.UUID) and first.id != second.id
    assert first.data == {} and first.data is not second.data
    assert first.decisions == [] and first.decisions is not second.decisions


def test_the_orm_saves_its_rows(notification):
    delivery = row_new(Delivery, notification=notification, notification_due_at=notification.due_at,
                       producer_id=notification.producer_id, type_id=notification.type_id, channel="in_app",
                       priority="low", target="u_1", next_attempt_at=timezone.now())
    delivery.save()
    row_new(DeliveryAttempt, delivery=delivery, number=1, provider="inbox", outcome="sent", at=timezone.now()).save()
    row_new(DeliveryEvent, delivery_id=delivery.id, status="sending", previous_status="queued", source="worker",
            at=timezone.now()).save()
    InboxItem.objects.bulk_create([row_new(InboxItem, recipient_id=notification.recipient_id,
                                           notification_id=notification.id, title="Hi")])

    stored = Delivery.objects.get(id=delivery.id)
    assert (stored.channel, stored.status, stored.attempts, stored.content) == ("in_app", "queued", 0, {})
    assert DeliveryAttempt.objects.filter(delivery=stored).count() == 1
    assert DeliveryEvent.objects.filter(delivery=stored, status="sending").exists()
    assert InboxItem.objects.get(notification=notification).title == "Hi"
