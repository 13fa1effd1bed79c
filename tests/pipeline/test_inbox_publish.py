"""New inbox items reach the streams their users have open, and cost nothing for users with none open."""
import pytest
from django.utils import timezone

from notifier.inbox import inbox_channel, inbox_items_published
from notifier.models import InboxItem, Notification
from notifier.redis_client import redis_client
from tests.conftest import make_order_type, make_producer
from tests.campaigns.conftest import make_recipients

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(db):
    producer, _ = make_producer()
    notification_type = make_order_type()
    recipients = make_recipients(3, prefix="reader")
    made = []
    for recipient in recipients:
        notification = Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                                   priority="low", data={}, due_at=timezone.now())
        made.append(InboxItem.objects.create(recipient=recipient, notification=notification, title="Hello"))
    return made


def test_an_item_is_published_to_the_stream_its_user_has_open_and_to_no_other(items):
    listener = redis_client().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(inbox_channel("reader1"))
    listener.get_message(timeout=1)  # the subscription's confirmation
    try:
        inbox_items_published([i.notification_id for i in items],
                              {i.recipient_id: i.recipient.user_id for i in items})

        message = listener.get_message(timeout=2)
        assert message is not None and message["channel"].decode() == inbox_channel("reader1")
        assert f"id: {items[1].id}" in message["data"].decode()
        assert listener.get_message(timeout=0.2) is None
    finally:
        listener.close()


def test_items_for_users_with_no_stream_open_are_not_even_read(items, django_assert_num_queries):
    with django_assert_num_queries(0):
        inbox_items_published([i.notification_id for i in items],
                              {i.recipient_id: i.recipient.user_id for i in items})
