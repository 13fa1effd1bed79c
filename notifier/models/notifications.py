import uuid

from django.db import models
from django.db.models import Q

from .choices import NotificationStatus, Priority
from .fields import JSONField


class Notification(models.Model):
    """One event for one recipient. The row is the outbox: it is written `accepted` in the request's
    transaction and the route step takes it from there (docs/architecture.md, "Reliability rules")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    producer = models.ForeignKey("notifier.Producer", on_delete=models.PROTECT, related_name="notifications",
                                 db_index=False)  # notification_producer leads with it
    type = models.ForeignKey("notifier.NotificationType", on_delete=models.PROTECT, related_name="+")
    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="notifications",
                                  db_index=False)  # notification_recipient leads with it
    data = JSONField(default=dict, blank=True)
    channels = JSONField(default=list, blank=True, help_text="The producer's override; empty: type's.")
    # Tried in order, once each, when every delivery so far reached no one (pipeline/fallback.py). None
    # until routed: the type's default_fallback_channels; routing stores the list it will use.
    fallback_channels = JSONField(null=True, blank=True, default=None)
    # {"channels": ["email"], "if_unread_after_seconds": 600}: sent on those channels if the in-app item is
    # still unread then (pipeline/escalation.py).
    escalation = JSONField(null=True, blank=True, default=None)
    # The escalation is pending until then; beat releases it, reading the item cancels it (sets it null).
    # While set, the notification stays processing.
    escalate_at = models.DateTimeField(null=True, blank=True)
    # The campaign that made it (notifier/campaigns/): one notification per recipient per campaign.
    campaign = models.ForeignKey("notifier.Campaign", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="notifications", db_index=False)
    priority = models.CharField(max_length=8, choices=Priority.choices)
    status = models.CharField(max_length=24, choices=NotificationStatus.choices, default=NotificationStatus.ACCEPTED)
    # Why each channel was or was not used: [{"channel": "sms", "decision": "skipped", "reason": "..."}].
    decisions = JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # Push: a newer notification with the same key replaces an undelivered or displayed older one
    # (apns-collapse-id, which Apple limits to 64 bytes; FCM android.collapse_key).
    collapse_key = models.CharField(max_length=64, blank=True)
    schedule_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # When the route step may take it: schedule_at, or the moment it was accepted.
    due_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the producer cancelled it (pipeline/cancel.py). A delivery that was already with a worker then
    # finishes its attempt, but is never sent again: no retry, no return to the queue.
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A chunk routed twice makes no second notification for anyone.
            models.UniqueConstraint(fields=["campaign", "recipient"], condition=Q(campaign__isnull=False),
                                    name="notification_once_per_campaign"),
        ]
        indexes = [
            models.Index(
                fields=["priority", "due_at"],
                condition=Q(status__in=["accepted", "scheduled"]),
                name="notification_due",
            ),
            models.Index(fields=["escalate_at"], condition=Q(escalate_at__isnull=False), name="notification_escalation"),
            models.Index(fields=["producer", "-created_at"], name="notification_producer"),
            models.Index(fields=["recipient", "-created_at"], name="notification_recipient"),
            # Cancel by idempotency key: every notification a producer's request made under that key.
            models.Index(fields=["producer", "idempotency_key"], condition=~Q(idempotency_key=""),
                         name="notification_idempotency_key"),
        ]

    def __str__(self):
        return str(self.id)


class IdempotencyKey(models.Model):
    """A producer's idempotency key and the answer it got, so a retried request gets the same answer."""

    producer = models.ForeignKey("notifier.Producer", on_delete=models.CASCADE, related_name="+",
                                 db_index=False)  # idempotency_key_per_producer leads with it
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response = JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["producer", "key"], name="idempotency_key_per_producer")]

    def __str__(self):
        return self.key
