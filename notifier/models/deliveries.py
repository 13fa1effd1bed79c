from django.db import models
from django.db.models import Q

from .choices import Channel, DeliveryStatus, Priority


class Delivery(models.Model):
    """One notification on one channel to one target (a device token, an address, a number, an inbox).

    The row is the work item: deliver tasks claim queued rows whose next_attempt_at has come, so retries
    and long waits live here, not in Celery countdowns.
    """

    notification = models.ForeignKey("notifier.Notification", on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    priority = models.CharField(max_length=8, choices=Priority.choices)
    target = models.CharField(max_length=512)
    device = models.ForeignKey("notifier.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # PROTECT: a delivery keeps the version that rendered it; a template version is never deleted under it.
    template = models.ForeignKey("notifier.Template", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The rendered message: subject, title, body, html_body, action_url, data.
    content = models.JSONField(default=dict)
    provider = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Why a delivery is held or suppressed ("held for quiet hours until 07:00 Asia/Karachi").
    status_reason = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel", "target"], name="delivery_once_per_target")
        ]
        indexes = [
            models.Index(
                fields=["channel", "priority", "next_attempt_at"],
                condition=Q(status="queued"),
                name="delivery_due",
            ),
            models.Index(fields=["claimed_at"], condition=Q(status="sending"), name="delivery_claimed"),
            # Held rows are released when next_attempt_at comes (pipeline/holds.py).
            models.Index(fields=["next_attempt_at"], condition=Q(status="held"), name="delivery_held"),
            models.Index(fields=["claim_token"], condition=Q(claim_token__isnull=False), name="delivery_claim"),
            # Status callbacks name a delivery by the provider's message id (webhooks/twilio.py).
            models.Index(fields=["provider_message_id"], name="delivery_provider_msg"),
        ]

    def __str__(self):
        return f"{self.channel} → {self.target} ({self.status})"
