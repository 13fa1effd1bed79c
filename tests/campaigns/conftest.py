import pytest
from django.utils import timezone

from notifier.models import Campaign, CampaignStatus, Recipient
from tests.conftest import make_order_type


@pytest.fixture
def promo_type(db):
    return make_order_type("spring_sale", channels=("email", "in_app"), category="marketing",
                           default_priority="low")


def make_recipients(n, prefix="u", **fields):
    fields.setdefault("marketing_opt_in", True)
    rows = [Recipient(user_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com", **fields) for i in range(n)]
    Recipient.objects.bulk_create(rows)
    return list(Recipient.objects.filter(user_id__startswith=prefix).order_by("id"))


def make_campaign(producer, notification_type, **fields):
    fields.setdefault("segment", {"all": True})
    fields.setdefault("data", {"order_id": "SPRING", "carrier": "—"})
    fields.setdefault("status", CampaignStatus.RUNNING)
    if fields["status"] == CampaignStatus.RUNNING:
        fields.setdefault("started_at", timezone.now())
    campaign = Campaign.objects.create(producer=producer, type=notification_type, name="Spring sale", **fields)
    campaign.estimated_recipients = Recipient.objects.count()
    campaign.save(update_fields=["estimated_recipients"])
    return campaign
