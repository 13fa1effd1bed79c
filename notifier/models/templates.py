from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from .choices import Category, Channel, Priority, RateLimitAction
from .fields import JSONField

# Critical skips opt-outs, marketing opt-in, quiet hours and rate limits: for security alerts and codes,
# never for a campaign that would reach users who said no.
CRITICAL_ONLY_TRANSACTIONAL = (
    "Only a transactional type can be critical (critical skips opt-outs, quiet hours and rate limits)."
)


class TrackEngagement(models.TextChoices):
    """Whether a type's email carries the open pixel and tracked links (notifier/tracking.py)."""

    DEFAULT = "default", "By category: on for marketing, off for the rest"
    ON = "on", "On"
    OFF = "off", "Off"


class NotificationType(models.Model):
    """What kind of event a notification is ("order_shipped"), and how it is sent by default.

    `variables` is the schema of the data a producer must or may pass:
    {"order_id": {"required": true}, "carrier": {"default": "UPS"}}.
    """

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.TRANSACTIONAL)
    default_priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.MEDIUM)
    default_channels = JSONField(default=list)
    # Tried in order when a notification's channels reach no one, unless its request names its own
    # (pipeline/fallback.py). Never one of default_channels.
    default_fallback_channels = JSONField(default=list, blank=True)
    default_language = models.CharField(max_length=16, default="en")
    variables = JSONField(default=dict, blank=True)
    # Security alerts, verification codes: sent whatever the user's opt-outs, quiet hours and rate limits.
    # Transactional types only (clean() and the API refuse others).
    critical = models.BooleanField(default=False)
    rate_limit_action = models.CharField(
        max_length=8, choices=RateLimitAction.choices, default=RateLimitAction.SUPPRESS,
        help_text="What happens to a delivery over the user's rate limit: dropped, or held until there is room.",
    )
    # Digestible types: within this window, a user's notifications of the type collapse into one delivery
    # per channel (notifier/pipeline/digest.py). 0: never digested. A user's "hourly"/"daily" setting wins.
    digest_window_seconds = models.PositiveIntegerField(
        default=0, help_text="Collapse a user's notifications of this type within this many seconds into one "
                             "digest (0: never). Critical types and high priority are never digested.",
    )
    track_engagement = models.CharField(
        max_length=8, choices=TrackEngagement.choices, default=TrackEngagement.DEFAULT,
        help_text="Email open pixel and click redirect. By category: on for marketing, off for transactional "
                  "and system email.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key

    def clean(self):
        if self.critical and self.category != Category.TRANSACTIONAL:
            raise ValidationError({"critical": CRITICAL_ONLY_TRANSACTIONAL})


class Template(models.Model):
    """The text of one type on one channel in one language. Versions are kept; one is active."""

    type = models.ForeignKey(NotificationType, on_delete=models.CASCADE, related_name="templates",
                             db_index=False)  # template_version leads with it
    channel = models.CharField(max_length=16, choices=Channel.choices)
    language = models.CharField(max_length=16, default="en")
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)
    subject = models.CharField(max_length=255, blank=True, help_text="Email subject.")
    title = models.CharField(max_length=255, blank=True, help_text="Push and in-app title.")
    body = models.TextField(help_text="Plain text: push body, SMS text, in-app body, email text part.")
    html_body = models.TextField(blank=True, help_text="Email HTML part (variables are autoescaped).")
    action_url = models.CharField(max_length=1000, blank=True)
    # Push only (APNs aps.badge / aps.sound; FCM the same in its apns block, and Android's notification).
    badge = models.PositiveIntegerField(
        null=True, blank=True, help_text="Push: the app icon's badge number (0 clears it); empty leaves it as is.",
    )
    sound = models.CharField(
        max_length=255, blank=True,
        help_text='Push: "default", or a sound file in the app bundle (iOS) or res/raw (Android); empty: silent.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "channel", "language", "version"], name="template_version"),
            models.UniqueConstraint(
                fields=["type", "channel", "language"], condition=Q(active=True), name="template_one_active"
            ),
        ]

    def __str__(self):
        return f"{self.type.key}/{self.channel}/{self.language} v{self.version}"
