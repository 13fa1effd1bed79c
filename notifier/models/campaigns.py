"""Campaigns: one message to a segment of users, fanned out in chunks (notifier/campaigns/).

A Campaign row is the producer's request and its progress; each CampaignChunk is one slice of the segment
by recipient id (after_recipient_id, last_recipient_id], made by the fan-out and routed once by a chunk
task. The chunk's routing decisions are counted on its row (what GET /api/v1/campaigns/{id} sums for
targeted, eligible and suppressed); what happened to the deliveries after that is read from the
deliveries themselves (Delivery.campaign). A RecipientTopic is one user's subscription to a topic.
"""
import uuid

from django.db import models
from django.db.models import Q

from notifier.validation import TOPIC_MAX_LENGTH, validate_topic

from .fields import JSONField


class CampaignStatus(models.TextChoices):
    SCHEDULED = "scheduled"  # waiting for schedule_at
    RUNNING = "running"  # fanning out, or its deliveries are still being sent
    PAUSED = "paused"  # no new chunk is routed and no new send starts until it is resumed
    CANCELLED = "cancelled"  # nothing not yet sent will be
    COMPLETED = "completed"  # every recipient was routed and every delivery has ended


CAMPAIGN_STOPPED_STATUSES = (CampaignStatus.PAUSED, CampaignStatus.CANCELLED)
CAMPAIGN_FINAL_STATUSES = (CampaignStatus.CANCELLED, CampaignStatus.COMPLETED)


class Campaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    producer = models.ForeignKey("notifier.Producer", on_delete=models.PROTECT, related_name="campaigns",
                                 db_index=False)  # campaign_producer leads with it
    name = models.CharField(max_length=200)
    type = models.ForeignKey("notifier.NotificationType", on_delete=models.PROTECT, related_name="+")
    data = JSONField(default=dict, blank=True)
    channels = JSONField(default=list, blank=True, help_text="Empty: the type's default channels.")
    # {"user_ids": [...]}, {"topic": "sports"}, {"all": true} or {"filter": {...}} (notifier/campaigns/segments.py).
    segment = JSONField()
    schedule_at = models.DateTimeField(null=True, blank=True)
    # {"local_time": "09:00", "timezone_fallback": "UTC"} or {"spread_seconds": 14400} (campaigns/windows.py).
    send_window = JSONField(null=True, blank=True)
    throttle_per_second = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # The fingerprint of the request that created it under its idempotency key: the same key with another
    # body is refused (notifier/campaigns/service.py), for as long as the campaign exists.
    request_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.SCHEDULED)
    estimated_recipients = models.PositiveBigIntegerField(default=0)
    # Fan-out progress: the last recipient id put in a chunk, and how many chunks there are so far.
    cursor = models.BigIntegerField(default=0)
    chunks_created = models.PositiveIntegerField(default=0)
    fanned_out_at = models.DateTimeField(null=True, blank=True, help_text="When the last chunk was made.")
    # The fan-out task holding the campaign until then (one at a time); beat starts another after it.
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["producer", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="campaign_idempotency_key"),
        ]
        indexes = [
            models.Index(fields=["producer", "-created_at"], name="campaign_producer"),
            models.Index(fields=["status"], condition=Q(status__in=["scheduled", "running", "paused"]),
                         name="campaign_active"),
        ]

    def __str__(self):
        return self.name


class CampaignChunk(models.Model):
    PENDING = "pending"
    DONE = "done"
    STATUSES = [(PENDING, "pending"), (DONE, "done")]

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="chunks",
                                 db_index=False)  # campaign_chunk_number leads with it
    number = models.PositiveIntegerField()
    after_recipient_id = models.BigIntegerField()
    last_recipient_id = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=STATUSES, default=PENDING)
    # When routing may start: a spread send window or the throttle paces chunks by this.
    due_at = models.DateTimeField()
    recipients = models.PositiveIntegerField(default=0)
    # The routing decisions counted (notifier/campaigns/counts.py): {"eligible": {"email": 980},
    # "suppressed": {"opted_out": 12}, "held": 5, "scheduled": 0}.
    counts = JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "number"], name="campaign_chunk_number")]
        indexes = [models.Index(fields=["campaign", "due_at"], condition=Q(status="pending"),
                                name="campaign_chunk_pending")]

    def __str__(self):
        return f"{self.campaign_id} chunk {self.number}"


class CampaignMember(models.Model):
    """One recipient of a campaign whose segment lists its user ids ({"user_ids": [...]}), stored when the
    campaign is created: the chunks then walk the segment by recipient id like any other segment's."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members",
                                 db_index=False)  # campaign_member_once leads with it
    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "recipient"], name="campaign_member_once")]

    def __str__(self):
        return f"{self.campaign_id} → {self.recipient_id}"


class RecipientTopic(models.Model):
    """A user's subscription to a topic ("sports"): what a campaign's {"topic": ...} segment reaches."""

    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="topics",
                                  db_index=False)  # recipient_topic_once leads with it
    topic = models.CharField(max_length=TOPIC_MAX_LENGTH, validators=[validate_topic])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["recipient", "topic"], name="recipient_topic_once")]
        # A topic segment walks its subscribers by recipient id.
        indexes = [models.Index(fields=["topic", "recipient"], name="topic_recipients")]

    def __str__(self):
        return f"{self.recipient_id} → {self.topic}"
