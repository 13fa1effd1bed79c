"""Send windows: 09:00 on each recipient's own clock (across zones and a DST change), or an even spread."""
from datetime import UTC, datetime, time

import pytest

from notifier.campaigns import fanout
from notifier.campaigns.windows import chunk_due_at, local_time_next, window_zone
from notifier.models import CampaignChunk, Delivery, DeliveryStatus, Recipient
from notifier.pipeline.holds import release_due_holds
from tests.campaigns.conftest import make_campaign

NINE = time(9, 0)


def route_whole_segment_as_one_chunk(campaign):
    # The campaign "started" in the future (see below), so the fan-out would wait for it: the chunk is made here.
    CampaignChunk.objects.create(campaign=campaign, number=1, after_recipient_id=0, last_recipient_id=10**9,
                                 due_at=campaign.started_at)
    fanout.campaign_chunk_run(campaign.id, 1)


@pytest.mark.parametrize("zone_name, started, expected", [
    # Tokyo (UTC+9, no DST): 09:00 local is 00:00 UTC; started at 01:00 UTC, so the next day's.
    ("Asia/Tokyo", datetime(2026, 3, 7, 1, 0, tzinfo=UTC), datetime(2026, 3, 8, 0, 0, tzinfo=UTC)),
    # New York on the day clocks spring forward (8 March 2026): 09:00 EDT is 13:00 UTC, not 14:00.
    ("America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
    # ... and the day before, still EST: 14:00 UTC.
    ("America/New_York", datetime(2026, 3, 7, 5, 0, tzinfo=UTC), datetime(2026, 3, 7, 14, 0, tzinfo=UTC)),
    # Berlin when clocks fall back (25 October 2026): 09:00 CET is 08:00 UTC.
    ("Europe/Berlin", datetime(2026, 10, 25, 2, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    # Started exactly at 09:00 local: that very moment.
    ("UTC", datetime(2026, 6, 1, 9, 0, tzinfo=UTC), datetime(2026, 6, 1, 9, 0, tzinfo=UTC)),
])
def test_local_time_next_is_the_next_nine_on_the_recipients_clock(zone_name, started, expected):
    assert local_time_next(started, NINE, window_zone(zone_name, "UTC")) == expected


def test_a_time_in_the_spring_forward_gap_resolves_after_the_gap():
    # 02:30 does not exist in New York on 8 March 2026: it resolves to 03:30 EDT (07:30 UTC).
    at = local_time_next(datetime(2026, 3, 8, 5, 0, tzinfo=UTC), time(2, 30), window_zone("America/New_York", None))

    assert at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_an_unknown_zone_uses_the_campaigns_fallback():
    assert str(window_zone("Mars/Olympus", "Europe/Paris")) == "Europe/Paris"
    assert str(window_zone("", "Asia/Kolkata")) == "Asia/Kolkata"
    assert str(window_zone(None, None)) == "UTC"


def test_spread_makes_chunks_due_evenly_over_the_window():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    window = {"spread_seconds": 4000}

    dues = [chunk_due_at(window, start, n, estimated_recipients=4000, chunk_size=1000) for n in (1, 2, 3, 4)]

    assert [(d - start).total_seconds() for d in dues] == [0, 1000, 2000, 3000]


def test_a_local_time_campaign_holds_each_users_deliveries_until_nine_on_their_clock(db, producer, promo_type):
    tokyo = Recipient.objects.create(user_id="tokyo", email="t@example.com", timezone="Asia/Tokyo",
                                     marketing_opt_in=True)
    nowhere = Recipient.objects.create(user_id="nowhere", email="n@example.com", timezone="",
                                       marketing_opt_in=True)
    # A start in the future, so that the moments computed from it are still ahead of the route step's clock.
    started = datetime(2027, 3, 6, 1, 0, tzinfo=UTC)
    campaign = make_campaign(producer, promo_type, started_at=started,
                             send_window={"local_time": "09:00", "timezone_fallback": "America/New_York"})

    route_whole_segment_as_one_chunk(campaign)

    by_user = {d.notification.recipient.user_id: d for d in Delivery.objects.filter(campaign=campaign, channel="email")}
    assert by_user["tokyo"].status == DeliveryStatus.HELD
    assert by_user["tokyo"].next_attempt_at == datetime(2027, 3, 7, 0, 0, tzinfo=UTC)
    assert by_user["tokyo"].status_reason.startswith("held for the campaign's send window until")
    assert by_user["nowhere"].next_attempt_at == datetime(2027, 3, 6, 14, 0, tzinfo=UTC)  # 09:00 EST
    # The in-app item waits too: the window is the campaign's, not quiet hours'.
    assert Delivery.objects.get(campaign=campaign, channel="in_app", notification__recipient=tokyo).status == "held"
    # Counted at once, as eligible and held.
    counts = CampaignChunk.objects.get(campaign=campaign).counts
    assert counts["held"] == 4 and counts["eligible"] == {"email": 2, "in_app": 2}

    release_due_holds(now=datetime(2027, 3, 6, 14, 0, 1, tzinfo=UTC))
    statuses = dict(Delivery.objects.filter(campaign=campaign, channel="email")
                    .values_list("notification__recipient__user_id", "status"))
    assert statuses == {"nowhere": "queued", "tokyo": "held"}


def test_quiet_hours_still_apply_on_top_of_the_window(db, producer, promo_type):
    Recipient.objects.create(user_id="owl", email="o@example.com", timezone="UTC", marketing_opt_in=True,
                             quiet_hours_start=time(8, 0), quiet_hours_end=time(10, 0))
    campaign = make_campaign(producer, promo_type, started_at=datetime(2027, 6, 1, 1, 0, tzinfo=UTC),
                             send_window={"local_time": "09:00", "timezone_fallback": "UTC"})

    route_whole_segment_as_one_chunk(campaign)

    email = Delivery.objects.get(campaign=campaign, channel="email")
    assert email.next_attempt_at == datetime(2027, 6, 1, 10, 0, tzinfo=UTC)
    assert email.status_reason.startswith("held for quiet hours")
    # In-app is not a quiet-hours channel: it waits for 09:00 only.
    assert Delivery.objects.get(campaign=campaign, channel="in_app").next_attempt_at == datetime(
        2027, 6, 1, 9, 0, tzinfo=UTC)
