"""The deliver step with campaign rows: a paused campaign's deliveries are not claimed (and a batch claimed
as it paused is given back), a throttle sends at most its rate, and low priority drains in few wake-ups.
Email through the sandbox provider: a chunk delivers its in-app items itself (test_fanout.py)."""
import pytest
from django.utils import timezone

from notifier.campaigns import fanout
from notifier.campaigns.stops import campaigns_stopped_forget
from notifier.models import Campaign, CampaignStatus, Delivery, DeliveryAttempt, DeliveryStatus, SandboxMessage
from notifier.pipeline import dispatch
from tests.campaigns.conftest import make_campaign, make_recipients


@pytest.fixture(autouse=True)
def fresh_stops():
    campaigns_stopped_forget()
    yield
    campaigns_stopped_forget()


def routed_campaign(producer, notification_type, n=20, **fields):
    make_recipients(n)
    campaign = make_campaign(producer, notification_type, channels=["email"], **fields)
    fanout.campaign_advance(campaign.id)
    fanout.campaign_chunk_run(campaign.id, 1)
    return campaign


def test_a_paused_campaigns_deliveries_are_not_claimed_until_it_resumes(db, producer, promo_type):
    campaign = routed_campaign(producer, promo_type)
    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.PAUSED)
    campaigns_stopped_forget()

    assert dispatch.deliver_due("email", "low") == 0
    assert SandboxMessage.objects.count() == 0

    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.RUNNING)
    campaigns_stopped_forget()
    assert dispatch.deliver_due("email", "low") == 20
    assert SandboxMessage.objects.count() == 20


def test_a_batch_claimed_as_its_campaign_pauses_goes_back_to_the_queue_unsent(db, producer, promo_type):
    campaign = routed_campaign(producer, promo_type)
    claimed = dispatch.deliveries_claim("email", "low", 100)
    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.PAUSED)
    campaigns_stopped_forget()

    dispatch.deliveries_send(claimed)

    assert SandboxMessage.objects.count() == 0
    rows = Delivery.objects.filter(campaign=campaign)
    assert set(rows.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}
    assert set(rows.values_list("attempts", flat=True)) == {0}  # no attempt spent
    assert DeliveryAttempt.objects.count() == 0


def test_a_throttled_campaign_sends_at_most_its_rate_and_the_rest_wait_their_turn(db, producer, promo_type):
    campaign = routed_campaign(producer, promo_type, throttle_per_second=5)
    before = timezone.now()

    dispatch.deliver_due("email", "low")

    assert SandboxMessage.objects.count() == 5  # the bucket holds one second's worth
    waiting = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED).order_by("next_attempt_at")
    assert waiting.count() == 15
    assert set(waiting.values_list("attempts", flat=True)) == {0}
    # Spread at the rate: the last of the 15 waits about 3 s (15 / 5 per second).
    spread = (waiting.last().next_attempt_at - before).total_seconds()
    assert 2.0 < spread < 4.5
    assert waiting.first().last_error.startswith("campaign throttle")


def test_low_priority_keeps_claiming_full_batches_within_one_wake_up(db, producer, promo_type, settings):
    settings.NOTIFIER_DELIVER_BATCH_SIZE_LOW = 7
    routed_campaign(producer, promo_type, n=20)

    assert dispatch.deliver_due("email", "low") == 20  # batches of 7, 7, 6 in one task

    assert SandboxMessage.objects.count() == 20
