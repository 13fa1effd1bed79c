from django.db import models

from notifier.validation import USER_ID_MAX_LENGTH, validate_user_id

from .choices import Digest
from .fields import JSONField


class Recipient(models.Model):
    """A user of the producers' products, known by their own id (`user_id`).

    The user's notification preferences live here too, so the route step reads them in the same query
    that loads the recipient (no per-recipient read, no cache to invalidate). notifier/pipeline/
    preferences.py resolves them; GET/PUT/PATCH /api/v1/users/{user_id}/notification-preferences edits them.
    """

    user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, unique=True, validators=[validate_user_id])
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155550100")
    timezone = models.CharField(max_length=64, default="UTC")
    language = models.CharField(max_length=16, default="en")
    attributes = JSONField(default=dict, blank=True)
    # When the user was last active, as the producer reports it (PUT /api/v1/users/{id}) or a device
    # registers or refreshes: what a campaign's segment filter reads as `last_seen_at`.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    sms_opted_out_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the carrier reports the number unsubscribed (STOP)."
    )
    # Preferences. Missing entries fall back to settings.NOTIFIER_DEFAULT_CHANNEL_PREFERENCES.
    channel_preferences = JSONField(default=dict, blank=True, help_text='e.g. {"sms": false}')
    type_preferences = JSONField(
        default=dict, blank=True, help_text='By type key or category: {"order_shipped": {"email": false}}'
    )
    quiet_hours_start = models.TimeField(null=True, blank=True, help_text="Local time, in `timezone`.")
    quiet_hours_end = models.TimeField(null=True, blank=True)
    marketing_opt_in = models.BooleanField(default=False)
    digest = models.CharField(max_length=8, choices=Digest.choices, default=Digest.REALTIME)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # A carrier's opt-out (Twilio 21610) is recorded by number (pipeline/dispatch.py, targets_gone).
            models.Index(fields=["phone"], name="recipient_phone"),
        ]

    def __str__(self):
        return self.user_id

    def set_phone(self, phone: str) -> None:
        """A new number has no opt-out or invalid-number record yet."""
        if phone != self.phone:
            self.phone = phone
            self.sms_opted_out_at = None


class Unsubscription(models.Model):
    """A user's opt-out of a category on a channel, and where it came from: the one-click link of an email
    (RFC 8058), SendGrid's unsubscribe and spam-report events, or an operator. The opt-out itself is the
    recipient's type_preferences entry (services.recipient_unsubscribe writes both); this row is the record
    of who unsubscribed from what and when."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="unsubscriptions",
                                  db_index=False)  # unsubscription_recipient leads with it
    category = models.CharField(max_length=100, help_text="A type's category (marketing), or a type key.")
    channel = models.CharField(max_length=16, default="email")
    type_key = models.CharField(max_length=100, blank=True, help_text="The type of the message it came from.")
    notification = models.ForeignKey("notifier.Notification", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    source = models.CharField(max_length=32, help_text="link, sendgrid unsubscribe, sendgrid spamreport, admin")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["recipient", "-created_at"], name="unsubscription_recipient")]

    def __str__(self):
        return f"{self.recipient} from {self.category} on {self.channel}"
