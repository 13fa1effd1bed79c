from django.db import models


class Recipient(models.Model):
    """A user of the producers' products, known by their own id (`user_id`)."""

    user_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155550100")
    timezone = models.CharField(max_length=64, default="UTC")
    language = models.CharField(max_length=16, default="en")
    attributes = models.JSONField(default=dict, blank=True)
    sms_opted_out_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the carrier reports the number unsubscribed (STOP)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.user_id
