from django.db import models
from django.utils import timezone


class EmailSuppression(models.Model):
    """An email address notifier sends nothing more to: SendGrid reported a hard bounce for it, or dropped
    a message to it as a bounced or invalid address (notifier/webhooks/sendgrid.py). The route step skips
    it for every recipient with that address (channels/email.py). Deleting the row, in admin, clears it.

    Addresses are stored lower-cased: mailbox providers treat them so, and one bounce must cover
    "Ann@Example.com" and "ann@example.com" alike."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "hard bounce"
        INVALID_ADDRESS = "invalid_address", "invalid address"
        ADMIN = "admin", "suppressed by an operator"

    address = models.CharField(max_length=254, unique=True, help_text="Lower-cased.")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    source = models.CharField(max_length=32, default="sendgrid", help_text="sendgrid, admin")
    detail = models.TextField(blank=True, help_text="The provider's words: the SMTP answer, the drop reason.")
    # The delivery whose bounce suppressed the address, when one is known.
    delivery = models.ForeignKey("notifier.Delivery", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created_at = models.DateTimeField(default=timezone.now, help_text="When the provider reported it.")

    def save(self, *args, **kwargs):
        self.address = self.address.strip().lower()
        super().save(*args, **kwargs)

    def describe(self) -> str:
        """The reason the route step records: "email address suppressed: hard bounce on 2026-12-02"."""
        return f"email address suppressed: {self.get_reason_display()} on {self.created_at:%Y-%m-%d}"

    def __str__(self):
        return f"{self.address} ({self.get_reason_display()})"


class WebhookEventSeen(models.Model):
    """An event id a provider's webhook already delivered (SendGrid's sg_event_id): SendGrid retries a
    batch it thinks failed, so an event can arrive twice, and the second time must change nothing. Rows
    older than NOTIFIER_WEBHOOK_EVENT_RETENTION_DAYS are deleted by the sweeper (SendGrid retries for 24
    hours at most)."""

    source = models.CharField(max_length=16)  # EventSource: sendgrid
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="webhook_event_once")]
        indexes = [models.Index(fields=["received_at"], name="webhook_event_received")]

    def __str__(self):
        return f"{self.source} {self.event_id}"
