"""notifier/campaigns/service.py without HTTP: the cancel of what a cancelled campaign has not sent, slice by
slice, and the progress counters in a fixed number of queries."""
import pytest
from django.utils import timezone

from notifier import tasks
from notifier.campaigns import service
from notifier.models import (
    Campaign, CampaignChunk, CampaignStatus, Delivery, DeliveryStatus, Notification, NotificationStatus, Recipient,
)

pytestmark = pytest.mark.django_db


def campaign_with_recipients(producer, order_type, count, delivery_status=DeliveryStatus.QUEUED,
                             notification_status=NotificationStatus.PROCESSING, prefix="r_"):
    """A cancelled campaign that routed `count` recipients: one notification and one email delivery each."""
    campaign = Campaign.objects.create(producer=producer, name="c", type=order_type, segment={"all": True},
                                       status=CampaignStatus.CANCELLED, cancelled_at=timezone.now())
    recipients = Recipient.objects.bulk_create(Recipient(user_id=f"{prefix}{n}", email=f"{prefix}{n}@example.com")
                                               for n in range(count))
    now = timezone.now()
    notifications = Notification.objects.bulk_create(
        Notification(producer=producer, type=order_type, campaign=campaign, recipient=recipient, priority="low",
                     status=notification_status, due_at=now) for recipient in recipients)
    Delivery.objects.bulk_create(
        Delivery(notification=notification, campaign=campaign, producer=producer, type=order_type,
                 notification_due_at=now, channel="email", priority="low", status=delivery_status,
                 target="x@example.com", next_attempt_at=now)
        for notification in notifications)
    return campaign


@pytest.fixture
def slices(monkeypatch):
    """The size of each notifications_cancel call the cancel makes."""
    sizes = []
    real = service.notifications_cancel

    def counting(where, *args, **kwargs):
        answers = real(where, *args, **kwargs)
        sizes.append(len(answers))
        return answers

    monkeypatch.setattr(service, "notifications_cancel", counting)
    return sizes


class TestCancelRest:
    def test_it_cancels_every_waiting_delivery_a_slice_at_a_time(self, producer, order_type, slices):
        campaign = campaign_with_recipients(producer, order_type, 250)

        cancelled, cursor = service.campaign_cancel_rest(campaign.id, slice_size=100)

        assert (cancelled, cursor) == (250, None)
        assert slices == [100, 100, 50]
        assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}
        assert not Notification.objects.filter(cancelled_at__isnull=True).exists()

    def test_by_default_a_slice_is_a_few_thousand(self, producer, order_type, slices):
        campaign = campaign_with_recipients(producer, order_type, 4500)

        assert service.campaign_cancel_rest(campaign.id) == (4500, None)
        assert slices == [2000, 2000, 500]

    def test_notifications_not_routed_yet_are_cancelled_whole(self, producer, order_type, slices):
        campaign = campaign_with_recipients(producer, order_type, 30, notification_status=NotificationStatus.SCHEDULED)
        Delivery.objects.all().delete()

        service.campaign_cancel_rest(campaign.id, slice_size=100)

        assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.CANCELLED}

    def test_what_was_sent_is_left_alone_and_not_walked(self, producer, order_type, slices):
        campaign = campaign_with_recipients(producer, order_type, 40, delivery_status=DeliveryStatus.SENT,
                                            notification_status=NotificationStatus.DELIVERED)

        assert service.campaign_cancel_rest(campaign.id, slice_size=10) == (0, None)
        assert slices == []
        assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}

    def test_out_of_time_it_says_where_to_go_on_and_going_on_finishes(self, producer, order_type, slices):
        campaign = campaign_with_recipients(producer, order_type, 25)

        cancelled, cursor = service.campaign_cancel_rest(campaign.id, slice_size=10, seconds=0)
        assert cancelled == 10 and cursor is not None
        rest, end = service.campaign_cancel_rest(campaign.id, after_recipient_id=cursor, slice_size=10)

        assert (rest, end) == (15, None)
        assert slices == [10, 10, 5]
        assert not Delivery.objects.exclude(status=DeliveryStatus.CANCELLED).exists()

    def test_each_slice_costs_the_same_queries_however_many_notifications_there_are(self, producer, order_type):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        def queries(count):
            campaign = campaign_with_recipients(producer, order_type, count, prefix=f"n{count}_")
            with CaptureQueriesContext(connection) as captured:
                service.campaign_cancel_rest(campaign.id, slice_size=100)
            reads = [q["sql"] for q in captured.captured_queries if 'ORDER BY "notifier_notification"."recipient_id"' in q["sql"]]
            assert all("LIMIT 100" in sql for sql in reads)  # never more than a slice in memory
            return len(captured.captured_queries)

        one, two, three = queries(100), queries(200), queries(300)

        assert three - two == two - one > 0

    def test_the_task_publishes_itself_again_with_where_it_stopped(self, monkeypatch):
        published = []
        monkeypatch.setattr(service, "campaign_cancel_rest", lambda campaign_id, after=0: (2000, 41))
        monkeypatch.setattr(tasks.campaign_cancel_rest, "apply_async", lambda args, **options: published.append(args))

        assert tasks.campaign_cancel_rest("c-1") == 2000
        assert published == [["c-1", 41]]

    def test_the_task_stops_when_nothing_is_left(self, monkeypatch):
        published = []
        monkeypatch.setattr(service, "campaign_cancel_rest", lambda campaign_id, after=0: (5, None))
        monkeypatch.setattr(tasks.campaign_cancel_rest, "apply_async", lambda args, **options: published.append(args))

        assert tasks.campaign_cancel_rest("c-1") == 5
        assert published == []


def test_progress_is_two_queries_whatever_the_number_of_chunks_and_deliveries(
        producer, order_type, django_assert_num_queries):
    campaign = campaign_with_recipients(producer, order_type, 30)
    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.RUNNING, estimated_recipients=60)
    campaign.refresh_from_db()
    Delivery.objects.filter(id__in=Delivery.objects.order_by("id").values("id")[:10]).update(status=DeliveryStatus.DEAD)
    for number in range(1, 4):
        CampaignChunk.objects.create(campaign=campaign, number=number, after_recipient_id=0, last_recipient_id=0,
                                     due_at=timezone.now(), recipients=10, status=CampaignChunk.DONE,
                                     counts={"eligible": {"email": 9}, "suppressed": {"no_target": 1}, "held": 2})

    with django_assert_num_queries(2):
        progress = service.campaign_progress(campaign)

    assert progress == {
        "targeted": 30, "eligible": {"email": 27}, "suppressed": {"no_target": 3}, "held": 6,
        "sent": 0, "delivered": 0, "opened": 0, "clicked": 0, "failed": 0, "dead": 10, "cancelled": 0,
        "waiting": 20, "chunks": {"created": 0, "done": 3}, "percent_done": 16.7,  # half routed, a third ended
    }


def test_progress_of_a_page_of_campaigns_is_the_same_two_queries(producer, order_type, django_assert_num_queries):
    campaigns = [Campaign.objects.create(producer=producer, name=f"c{n}", type=order_type, segment={"all": True})
                 for n in range(5)]

    with django_assert_num_queries(2):
        progress = service.campaigns_progress(campaigns)

    assert set(progress) == {c.id for c in campaigns}
    assert all(entry["percent_done"] == 0.0 for entry in progress.values())
