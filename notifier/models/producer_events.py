from django.db import models
from django.db.models import Q

from .fields import JSONField


class ProducerEventStatus(models.TextChoices):
    PENDING = "pending"  # to send at next_attempt_at (a claimed row's next_attempt_at is its lease's end)
    SENT = "sent"  # the producer's endpoint answered 2xx
    FAILED = "failed"  # still refused when its retry window ended; replayable in admin


class ProducerEvent(models.Model):
    """One status event for a producer's webhook, and the outbox row that delivers it
    (notifier/producer_webhooks.py). Written in the transaction of the status change it reports, so an
    event exists exactly when its change does; sent in batches, retried with backoff until `give_up_at`.

    The id is derived from what the event reports (a delivery's status, an unsubscription), so recording
    it twice is harmless and a producer dedupes by `id` across retries and replays."""

    id = models.UUIDField(primary_key=True, editable=False)
    # No index of its own: producer_event_producer starts with it.
    producer = models.ForeignKey("notifier.Producer", on_delete=models.CASCADE, related_name="events", db_index=False)
    type = models.CharField(max_length=32, help_text="delivery.delivered, delivery.failed, recipient.unsubscribed…")
    # Links for admin; the ids the producer sees are in `data`, and stay when these rows go.
    notification = models.ForeignKey("notifier.Notification", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    delivery = models.ForeignKey("notifier.Delivery", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    data = JSONField(help_text="The event's `data`, as the producer receives it.")
    created_at = models.DateTimeField()

    status = models.CharField(max_length=8, choices=ProducerEventStatus.choices, default=ProducerEventStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Retries stop then (24 hours after it was recorded, or after a replay): the event becomes failed.
    give_up_at = models.DateTimeField()
    # A claim is a lease: claiming stamps the token and moves next_attempt_at to the lease's end, so an event
    # whose sender died is simply due again then. The outcome is written only where the token still holds.
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["producer", "next_attempt_at"], condition=Q(status="pending"),
                         name="producer_event_due"),
            # The admin's listing, per producer or not; the purge of old events.
            models.Index(fields=["producer", "-created_at"], name="producer_event_producer"),
            models.Index(fields=["created_at"], name="producer_event_created"),
        ]

    def __str__(self):
        return f"{self.type} ({self.status})"
