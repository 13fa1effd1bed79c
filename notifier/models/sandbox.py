from django.db import models


class SandboxMessage(models.Model):
    """What a sandbox provider would have sent, exactly as it would have gone out."""

    channel = models.CharField(max_length=16)
    user_id = models.CharField(max_length=255)
    to = models.CharField(max_length=512)
    notification_id = models.UUIDField(db_index=True)
    delivery_id = models.BigIntegerField(unique=True)
    message = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["channel", "-created_at"], name="sandbox_channel"),
            # GET /api/v1/sandbox/messages?user_id=&channel=, newest first (selectors.sandbox_messages); also
            # serves user_id alone, so user_id needs no index of its own.
            models.Index(fields=["user_id", "channel", "-id"], name="sandbox_user_channel"),
        ]

    def __str__(self):
        return f"{self.channel} to {self.to}"
