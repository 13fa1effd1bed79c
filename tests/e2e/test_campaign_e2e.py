"""Campaigns with real workers: a campaign drains through the campaign worker group, pauses within 2 s
and resumes where it stopped, sending nothing twice."""
import os
import time
from collections import Counter

import pytest

import celeryconfig

from notifier.campaigns import fanout
from notifier.campaigns.service import campaign_cancel, campaign_pause, campaign_resume
from notifier.models import Campaign, CampaignStatus, Delivery, Device, InboxItem, Recipient
from tests.campaigns.conftest import make_campaign
from tests.conftest import make_order_type, make_reachable_user
from tests.e2e.conftest import wait_until
from tests.support import scripted_provider

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The campaign group, and maintenance for beat's campaigns-tick (which marks a campaign completed).
CAMPAIGN_QUEUES = ["campaign", "in_app.low", "push.low", "email.low", "sms.low", "maintenance"]


def push_audience(n):
    Recipient.objects.bulk_create([Recipient(user_id=f"u{i}", marketing_opt_in=True) for i in range(n)])
    Device.objects.bulk_create([Device(recipient=r, platform="android", token=f"token-{r.user_id}")
                                for r in Recipient.objects.all()])


def started(producer, notification_type, **fields):
    campaign = make_campaign(producer, notification_type, status=CampaignStatus.SCHEDULED, **fields)
    fanout.campaign_start(campaign)  # autocommit: its kick is published at once
    return campaign


def slow_push_campaign(producer, start_worker, start_beat):
    """A 300-device push campaign sent 20 ms a device, 10 a batch, by a real worker; returned once 30 are out."""
    notification_type = make_order_type("sale_push", channels=("push",), category="marketing",
                                        default_priority="low")
    push_audience(300)
    for i in range(300):
        scripted_provider.script(f"token-u{i}", {"kind": "sleep", "seconds": 0.02})
    start_worker(queues=CAMPAIGN_QUEUES, concurrency=2, NOTIFIER_PUSH_PROVIDERS="tests.support.scripted_provider",
                 NOTIFIER_DELIVER_BATCH_SIZE_LOW=10, NOTIFIER_CAMPAIGN_CHUNK_SIZE=100)
    start_beat()
    campaign = started(producer, notification_type)
    wait_until(lambda: len(sent_tokens()) >= 30, timeout=60)
    return campaign


def sent_tokens():
    return [s["to"] for s in scripted_provider.sent()]


def test_a_campaign_drains_through_its_workers_and_completes_with_every_recipient_reached_once(
        producer, start_worker, start_beat):
    notification_type = make_order_type("sale_inbox", channels=("in_app",), category="marketing",
                                        default_priority="low")
    Recipient.objects.bulk_create([Recipient(user_id=f"u{i}", marketing_opt_in=True) for i in range(2500)])
    start_worker(queues=CAMPAIGN_QUEUES, concurrency=2, NOTIFIER_CAMPAIGN_CHUNK_SIZE=500)
    start_beat()

    campaign = started(producer, notification_type)

    wait_until(lambda: Campaign.objects.get(id=campaign.id).status == CampaignStatus.COMPLETED, timeout=90)
    assert InboxItem.objects.count() == 2500
    assert set(Counter(InboxItem.objects.values_list("recipient_id", flat=True)).values()) == {1}
    assert Delivery.objects.filter(campaign=campaign).exclude(status="delivered").count() == 0


def test_a_pause_stops_new_sends_within_two_seconds_and_a_resume_sends_the_rest_once(
        producer, start_worker, start_beat):
    campaign = slow_push_campaign(producer, start_worker, start_beat)

    campaign_pause(campaign)
    time.sleep(2)
    after_two_seconds = len(sent_tokens())
    time.sleep(3)

    assert len(sent_tokens()) == after_two_seconds < 300  # nothing new started once the pause took effect
    campaign_resume(campaign)
    wait_until(lambda: Campaign.objects.get(id=campaign.id).status == CampaignStatus.COMPLETED, timeout=90)
    tokens = Counter(sent_tokens())
    assert len(tokens) == 300 and set(tokens.values()) == {1}  # every device once, none twice



def test_a_cancel_mid_flight_sends_nothing_more_and_cancels_every_delivery_not_sent(
        producer, start_worker, start_beat):
    campaign = slow_push_campaign(producer, start_worker, start_beat)

    campaign_cancel(campaign)
    time.sleep(2)
    after_two_seconds = len(sent_tokens())
    wait_until(lambda: not Delivery.objects.filter(campaign=campaign, status__in=("queued", "held")).exists(),
               timeout=60)

    assert len(sent_tokens()) == after_two_seconds < 300
    assert set(Counter(sent_tokens()).values()) == {1}
    statuses = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses["sent"] == after_two_seconds and set(statuses) <= {"sent", "cancelled"}
    assert Campaign.objects.get(id=campaign.id).status == CampaignStatus.CANCELLED


HIGH_QUEUES = celeryconfig.WORKER_GROUPS["high"]


def test_high_priority_reaches_its_provider_in_under_a_second_while_a_big_campaign_drains(
        producer, api, order_type, start_worker, start_beat):
    size = int(os.environ.get("NOTIFIER_E2E_CAMPAIGN_RECIPIENTS", "100000"))
    notification_type = make_order_type("sale_inbox_big", channels=("in_app",), category="marketing",
                                        default_priority="low")
    Recipient.objects.bulk_create([Recipient(user_id=f"fan{i}", marketing_opt_in=True) for i in range(size)],
                                  batch_size=5000)
    for i in range(50):  # one send each: 50 to one user would meet the per-user push rate limit
        make_reachable_user(f"vip{i}", devices=[("android", f"vip-token-{i}")])
    start_worker(queues=HIGH_QUEUES, concurrency=1, NOTIFIER_PUSH_PROVIDERS="tests.support.scripted_provider")
    start_worker(queues=CAMPAIGN_QUEUES, concurrency=2)
    start_beat()
    campaign = started(producer, notification_type)
    wait_until(lambda: InboxItem.objects.count() >= 2000, timeout=120)  # the campaign is draining

    accepted = {}
    for i in range(50):
        response = api.post("/api/v1/notifications", {
            "type": "order_shipped", "recipients": [{"user_id": f"vip{i}"}], "data": {"order_id": "1"},
            "channels": ["push"], "priority": "high"}, format="json")
        assert response.status_code == 202, response.content
        accepted[response.json()["notifications"][0]["id"]] = time.time()
        time.sleep(0.2)
    wait_until(lambda: len(scripted_provider.sent()) == 50, timeout=60)

    assert InboxItem.objects.count() < size  # measured while the campaign was still draining
    by_notification = dict(Delivery.objects.filter(notification_id__in=accepted).values_list("id", "notification_id"))
    latencies = sorted(s["at"] - accepted[str(by_notification[s["delivery_id"]])] for s in scripted_provider.sent())
    p99 = latencies[int(0.99 * len(latencies))]
    assert p99 < 1.0, f"p99 {p99:.3f} s; slowest {latencies[-5:]}"
    wait_until(lambda: Campaign.objects.get(id=campaign.id).status == CampaignStatus.COMPLETED, timeout=600)
    assert InboxItem.objects.filter(recipient__user_id__startswith="fan").count() == size
