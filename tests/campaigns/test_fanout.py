"""The fan-out and its chunks, as plain functions (no Celery): chunks by id range, each routed once by the
route step's rules, backpressure, shedding and completion."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifier.campaigns import fanout
from notifier.models import (
    Campaign,
    CampaignChunk,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    EmailSuppression,
    DeliveryAttempt,
    DeliveryEvent,
    InboxItem,
    Notification,
    Recipient,
    RecipientTopic,
)
from tests.campaigns.conftest import make_campaign, make_recipients


@pytest.fixture
def small_chunks(settings):
    settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE = 10
    settings.NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT = 100


def run_campaign(campaign, passes=50):
    """Advance and route every chunk the way the tasks would, until no chunk is pending."""
    for _ in range(passes):
        fanout.campaign_advance(campaign.id)
        pending = list(CampaignChunk.objects.filter(campaign=campaign, status="pending").values_list("number", flat=True))
        if not pending:
            campaign.refresh_from_db()
            if campaign.fanned_out_at:
                return
        for number in pending:
            fanout.campaign_chunk_run(campaign.id, number)
    raise AssertionError("the campaign did not fan out")


def test_it_routes_every_recipient_once_in_chunks_of_the_chunk_size(db, producer, promo_type, small_chunks):
    make_recipients(35)
    campaign = make_campaign(producer, promo_type)

    run_campaign(campaign)

    chunks = list(CampaignChunk.objects.filter(campaign=campaign).order_by("number"))
    assert [c.recipients for c in chunks] == [10, 10, 10, 5]
    assert all(c.status == "done" for c in chunks)
    assert Notification.objects.filter(campaign=campaign).count() == 35
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert deliveries.count() == 70
    assert set(deliveries.values_list("priority", flat=True)) == {"low"}
    assert chunks[0].counts == {"eligible": {"email": 10, "in_app": 10}, "suppressed": {}, "held": 0}


def test_a_chunk_run_twice_creates_nothing_twice(db, producer, promo_type, small_chunks):
    make_recipients(10)
    campaign = make_campaign(producer, promo_type)
    fanout.campaign_advance(campaign.id)

    assert fanout.campaign_chunk_run(campaign.id, 1) == 10
    assert fanout.campaign_chunk_run(campaign.id, 1) == 0

    assert Notification.objects.filter(campaign=campaign).count() == 10
    assert Delivery.objects.filter(campaign=campaign).count() == 20


def test_a_chunk_counts_its_suppressions_by_reason(db, producer, promo_type, small_chunks):
    opted_in = make_recipients(6)
    make_recipients(2, prefix="nomarketing", marketing_opt_in=False)
    no_email = opted_in[0]
    no_email.email = ""
    no_email.save()
    EmailSuppression.objects.create(address=opted_in[1].email, reason="bounce")
    campaign = make_campaign(producer, promo_type)

    run_campaign(campaign)

    counts = CampaignChunk.objects.get(campaign=campaign).counts
    assert counts["eligible"] == {"email": 4, "in_app": 6}
    assert counts["suppressed"] == {"not_opted_in": 4, "no_target": 1, "email_suppressed": 1}


def test_a_chunk_costs_a_fixed_number_of_queries_whatever_its_size(db, producer, promo_type, settings):
    def queries_of_a_chunk(size: int, topic: str) -> int:
        # Recipients of their own: a user's earlier campaigns would count against their rate limits.
        RecipientTopic.objects.bulk_create(RecipientTopic(recipient=r, topic=topic)
                                           for r in make_recipients(size, prefix=f"{topic}-"))
        settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE = size
        campaign = make_campaign(producer, promo_type, segment={"topic": topic})
        fanout.campaign_advance(campaign.id)
        with CaptureQueriesContext(connection) as queries:
            assert fanout.campaign_chunk_run(campaign.id, 1) == size
        return len(queries)

    queries_of_a_chunk(5, "warm")  # fills the per-process caches (the paused campaigns, the producers with webhooks)
    small, large = queries_of_a_chunk(20, "small"), queries_of_a_chunk(200, "large")

    # Routing, the rows' COPY, the in-app items delivered in the chunk and their outcomes, the chunk's row;
    # one more when a cache of a second (the paused campaigns) is read anew.
    assert abs(small - large) <= 1 and large <= 31, (small, large)


def test_the_fan_out_waits_while_the_campaign_has_many_deliveries_waiting(db, producer, promo_type, small_chunks,
                                                                          settings):
    settings.NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES = 8
    make_recipients(40)
    campaign = make_campaign(producer, promo_type)

    fanout.campaign_advance(campaign.id)
    fanout.campaign_chunk_run(campaign.id, 1)  # 10 queued emails (the in-app items are delivered): over the cap

    assert CampaignChunk.objects.filter(campaign=campaign).count() == 1
    Delivery.objects.filter(campaign=campaign).update(status=DeliveryStatus.SENT)
    assert fanout.campaign_advance(campaign.id) >= 1


def test_campaigns_shed_while_transactional_deliveries_back_up(db, producer, promo_type, small_chunks, settings,
                                                              order_type, reachable_user):
    settings.NOTIFIER_CAMPAIGN_SHED_BACKLOG = 3
    make_recipients(20)
    campaign = make_campaign(producer, promo_type)
    backlog = [Notification.objects.create(producer=producer, type=order_type, recipient=reachable_user,
                                           priority="high", due_at=timezone.now()) for _ in range(4)]
    Delivery.objects.bulk_create([
        Delivery(notification=n, notification_due_at=n.due_at, producer=producer, type=order_type, channel="push",
                 priority="high", target=f"t{i}", next_attempt_at=timezone.now()) for i, n in enumerate(backlog)])

    assert fanout.campaign_advance(campaign.id) == 0

    Delivery.objects.filter(campaign=None).update(status=DeliveryStatus.SENT)
    assert fanout.campaign_advance(campaign.id) > 0


def test_a_campaign_completes_when_every_delivery_has_ended(db, producer, promo_type, small_chunks):
    make_recipients(12)
    campaign = make_campaign(producer, promo_type)
    run_campaign(campaign)
    fanout.campaign_advance(campaign.id)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING  # its deliveries are still queued

    Delivery.objects.filter(campaign=campaign).update(status=DeliveryStatus.SENT)
    fanout.campaign_advance(campaign.id)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert campaign.completed_at is not None


def test_a_paused_campaigns_chunk_routes_nothing_and_is_published_again_on_resume(db, producer, promo_type,
                                                                                 small_chunks):
    make_recipients(10)
    campaign = make_campaign(producer, promo_type)
    fanout.campaign_advance(campaign.id)
    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.PAUSED)

    assert fanout.campaign_chunk_run(campaign.id, 1) == 0
    assert CampaignChunk.objects.get(campaign=campaign, number=1).published_at is None

    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.RUNNING)
    assert fanout.campaign_advance(campaign.id) == 1
    assert fanout.campaign_chunk_run(campaign.id, 1) == 10


def test_a_spread_window_makes_each_chunk_due_at_its_share(db, producer, promo_type, small_chunks):
    make_recipients(30)
    campaign = make_campaign(producer, promo_type, send_window={"spread_seconds": 3000})

    fanout.campaign_advance(campaign.id)

    chunks = list(CampaignChunk.objects.filter(campaign=campaign))
    assert len(chunks) == 1  # the second is due 1,000 s after the start
    campaign.refresh_from_db()
    campaign.started_at -= timezone.timedelta(seconds=1500)
    campaign.save()
    fanout.campaign_advance(campaign.id)
    assert CampaignChunk.objects.filter(campaign=campaign).count() == 2


def test_a_scheduled_campaign_starts_when_its_moment_comes(db, producer, promo_type, small_chunks):
    make_recipients(3)
    later = make_campaign(producer, promo_type, status=CampaignStatus.SCHEDULED,
                          schedule_at=timezone.now() + timezone.timedelta(hours=1))
    due = make_campaign(producer, promo_type, status=CampaignStatus.SCHEDULED,
                        schedule_at=timezone.now() - timezone.timedelta(seconds=1))

    fanout.campaigns_tick()

    later.refresh_from_db()
    due.refresh_from_db()
    assert later.status == CampaignStatus.SCHEDULED
    assert due.status == CampaignStatus.RUNNING
    assert CampaignChunk.objects.filter(campaign=due).count() == 1


def test_a_chunk_renders_each_template_once_and_gives_each_recipient_its_own_unsubscribe_link(
        db, producer, promo_type, small_chunks, monkeypatch):
    from notifier.pipeline import render

    calls = []
    real = render.template_render
    monkeypatch.setattr(render, "template_render", lambda *a, **k: calls.append(a[0].channel) or real(*a, **k))
    make_recipients(10)
    campaign = make_campaign(producer, promo_type)

    run_campaign(campaign)

    assert sorted(calls) == ["email", "in_app"]
    emails = list(Delivery.objects.filter(campaign=campaign, channel="email"))
    links = {d.content["headers"]["List-Unsubscribe"] for d in emails}
    assert len(links) == 10  # one per recipient, signed for them
    for delivery in emails:
        link = delivery.content["headers"]["List-Unsubscribe"].strip("<>")
        assert link in delivery.content["body"] and link in delivery.content["html_body"]
        assert render.SharedRenders.PLACEHOLDER not in str(delivery.content)


def test_a_chunk_delivers_its_in_app_items_itself_and_queues_the_rest(db, producer, promo_type, small_chunks):
    make_recipients(12)
    campaign = make_campaign(producer, promo_type)
    fanout.campaign_advance(campaign.id)

    with CaptureQueriesContext(connection) as queries:
        fanout.campaign_chunk_run(campaign.id, 1)

    in_app = Delivery.objects.filter(campaign=campaign, channel="in_app")
    assert InboxItem.objects.count() == 10
    # their emails wait: the notifications stay open, and are not locked to be checked for closing
    assert set(Notification.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"processing"}
    notification_table = Notification._meta.db_table
    assert not [q["sql"] for q in queries if q["sql"].startswith(f'SELECT "{notification_table}"."id"')
                and "FOR UPDATE" in q["sql"]]
    assert {(d.status, d.provider, d.attempts) for d in in_app} == {("delivered", "inbox", 1)}
    assert not DeliveryAttempt.objects.filter(delivery__in=in_app).exists()  # a first-try success: the row says it
    assert DeliveryEvent.objects.filter(delivery__in=in_app, status="delivered").count() == 10
    emails = Delivery.objects.filter(campaign=campaign, channel="email")
    assert set(emails.values_list("status", "attempts")) == {(DeliveryStatus.QUEUED, 0)}  # for the email workers


def test_a_chunk_stores_its_in_app_deliveries_once_with_their_outcome_never_updating_them(db, producer, promo_type,
                                                                                        small_chunks):
    make_recipients(12)
    campaign = make_campaign(producer, promo_type, channels=["in_app"])
    fanout.campaign_advance(campaign.id)

    with CaptureQueriesContext(connection) as queries:
        fanout.campaign_chunk_run(campaign.id, 1)

    table = Delivery._meta.db_table
    assert not [q["sql"] for q in queries if q["sql"].startswith(f'UPDATE "{table}"')]
    in_app = list(Delivery.objects.filter(campaign=campaign).order_by("id"))
    assert len(in_app) == 10 and {(d.status, d.claim_token, d.sent_at is not None) for d in in_app} == {
        ("delivered", None, True)}
    # each delivery's events point at it, with the ids drawn before it was stored; a first-try success
    # writes no attempt row
    assert sorted(DeliveryEvent.objects.filter(delivery__in=in_app).values_list("delivery_id", flat=True)) == [
        d.id for d in in_app]
    assert not DeliveryAttempt.objects.filter(delivery__in=in_app).exists()
    assert set(InboxItem.objects.values_list("notification_id", flat=True)) == {d.notification_id for d in in_app}
    # in-app alone: nothing else waits, so each notification is closed with its item
    assert set(Notification.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"delivered"}


def test_a_chunk_leaves_in_app_items_held_for_a_local_time_window_to_beat(db, producer, promo_type, small_chunks):
    make_recipients(10, timezone="Asia/Tokyo")
    campaign = make_campaign(producer, promo_type, channels=["in_app"], send_window={"local_time": "09:00"})
    fanout.campaign_advance(campaign.id)

    fanout.campaign_chunk_run(campaign.id, 1)

    assert InboxItem.objects.count() == 0
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {DeliveryStatus.HELD}


def test_a_chunk_under_a_throttle_gives_its_in_app_items_over_the_rate_back_to_the_queue(db, producer, promo_type,
                                                                                       small_chunks):
    make_recipients(10)
    campaign = make_campaign(producer, promo_type, channels=["in_app"], throttle_per_second=4)
    fanout.campaign_advance(campaign.id)

    fanout.campaign_chunk_run(campaign.id, 1)

    assert InboxItem.objects.count() == 4  # the bucket holds one second's worth
    waiting = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED)
    assert waiting.count() == 6 and set(waiting.values_list("attempts", flat=True)) == {0}
