"""The recipients a campaign's segment reaches, as a query: {"user_ids": [...]} (its members, stored at
creation), {"topic": "sports"}, {"all": true}, or {"filter": ...}. The chunks of the fan-out walk it by
recipient id, so it must never load the whole segment."""
from __future__ import annotations

from django.db.models import QuerySet

from notifier.models import CampaignMember, Recipient


def segment_recipients(campaign) -> QuerySet:
    """The campaign's segment as a queryset of recipients (unordered; callers order by id)."""
    segment = campaign.segment
    if "user_ids" in segment:
        return Recipient.objects.filter(id__in=CampaignMember.objects.filter(campaign=campaign).values("recipient_id"))
    if "topic" in segment:
        return Recipient.objects.filter(topics__topic=segment["topic"])
    if segment.get("all") is True:
        return Recipient.objects.all()
    raise ValueError(f"campaign {campaign.id}: segment {sorted(segment)} is not one this version reads")
