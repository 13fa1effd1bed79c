from django.db import models

from .fields import JSONField


class SandboxMessage(models.Model):
    """What a sandbox provider would have sent, exactly as it would have gone out."""

    # The producer of the message's notification: GET /api/v1/sandbox/messages shows a producer its own
    # messages only. Kept on the row so that listing is one index range, not a join through notifications.
    # Indexed by the composite indexes below, which lead with it.
    producer = models.ForeignKey("notifier.Producer", null=True, on_delete=models.CASCADE, related_name="+",
                                 db_index=False)
    channel = models.CharField(max_length=16)
    user_id = models.CharField(max_length=255)
    to = models.CharField(max_length=512)
    notification_id = models.UUIDField(db_index=True)
    delivery_id = models.BigIntegerField(unique=True)
    message = JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["channel", "-created_at"], name="sandbox_channel"),
            # GET /api/v1/sandbox/messages, newest first (selectors.sandbox_messages): a producer's messages,
            # or a producer's messages to one user; a channel filters either range in order.
            models.Index(fields=["producer", "-id"], name="sandbox_producer"),
            models.Index(fields=["producer", "user_id", "-id"], name="sandbox_producer_user"),
        ]

    def __str__(self):
        return f"{self.channel} to {self.to}"
