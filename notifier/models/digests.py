from django.db import models
from django.db.models import Q

from .fields import JSONField


class DigestBatch(models.Model):
    """A user's notifications of one digestible type on one channel, collected while a window is open and
    sent as one delivery when it closes ("Alice and 4 others liked your photo").

    One batch is open per recipient × type × channel; beat flushes it once window_ends_at has passed: the
    digest Delivery is created and the batch marked flushed in one transaction, so it is sent exactly once.
    """

    OPEN = "open"
    FLUSHED = "flushed"
    STATUSES = [(OPEN, "open"), (FLUSHED, "flushed")]
    # The items a digest template sees; the count is exact whatever the number collected.
    MAX_ITEMS = 20

    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="+")
    type = models.ForeignKey("notifier.NotificationType", on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=STATUSES, default=OPEN)
    window_ends_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    # The newest MAX_ITEMS notifications: [{"notification_id": ..., "data": {...}, "created_at": ...}].
    items = JSONField(default=list)
    # The digest Delivery hangs on the newest notification of the batch.
    last_notification = models.ForeignKey("notifier.Notification", null=True, on_delete=models.SET_NULL,
                                          related_name="+")
    delivery = models.ForeignKey("notifier.Delivery", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    flushed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "digest batches"
        constraints = [
            models.UniqueConstraint(fields=["recipient", "type", "channel"], condition=Q(status="open"),
                                    name="digest_one_open_batch"),
        ]
        indexes = [models.Index(fields=["window_ends_at"], condition=Q(status="open"), name="digest_due")]

    def __str__(self):
        return f"{self.type_id}/{self.channel} × {self.count} ({self.status})"
