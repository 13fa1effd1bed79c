"""A campaign's `throttle` ({"max_per_second": 1000}): the most of its deliveries sent per second, over all
channels and all workers together, on top of each provider's own rate (providers/send_rate.py). A token
bucket in Redis per campaign, taken by the deliver step for a claimed batch in one round trip; the sends
over it go back to the queue, each due when its token will be, with no attempt spent. Redis unreachable:
the throttle fails open, like the providers' rates (the log says so)."""
from __future__ import annotations

from collections import defaultdict

from notifier.models import Campaign
from notifier.providers.send_rate import bucket_take

KEY_PREFIX = "notifier:campaign-rate:"


def throttle_split(deliveries) -> dict:
    """The deliveries over their campaign's throttle, by id, mapped to the seconds until their turn.
    One query and one Redis round trip per throttled campaign in the batch; none for a batch without
    campaign deliveries."""
    campaign_ids = {d.campaign_id for d in deliveries if d.campaign_id}
    if not campaign_ids:
        return {}
    rates = dict(Campaign.objects.filter(id__in=campaign_ids, throttle_per_second__isnull=False)
                 .values_list("id", "throttle_per_second"))
    by_campaign = defaultdict(list)
    for delivery in deliveries:
        if delivery.campaign_id in rates:
            by_campaign[delivery.campaign_id].append(delivery)
    waiting = {}
    for campaign_id, rows in by_campaign.items():
        rate = rates[campaign_id]
        granted, wait = bucket_take(f"{KEY_PREFIX}{campaign_id}", rate, len(rows), f"of campaign {campaign_id}")
        for position, delivery in enumerate(rows[granted:]):
            waiting[delivery.id] = wait + position / rate
    return waiting
