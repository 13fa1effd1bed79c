from django.db import models

from .choices import Platform


class Device(models.Model):
    """A push token. A token belongs to one recipient at a time; re-registering it elsewhere moves it."""

    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="devices",
                                  db_index=False)  # device_recipient_active leads with it
    platform = models.CharField(max_length=16, choices=Platform.choices)
    token = models.CharField(max_length=512, unique=True)
    active = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_reason = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["recipient", "active"], name="device_recipient_active")]

    def __str__(self):
        return f"{self.platform}:{self.token[:12]}…"
