"""The vocabularies the models share: channels, priorities, platforms and statuses."""
from django.db import models


class Channel(models.TextChoices):
    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class Priority(models.TextChoices):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Platform(models.TextChoices):
    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


class Category(models.TextChoices):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"
    SYSTEM = "system"


class Digest(models.TextChoices):
    REALTIME = "realtime"
    HOURLY = "hourly"
    DAILY = "daily"


class RateLimitAction(models.TextChoices):
    SUPPRESS = "suppress"  # a delivery over a user's limit is dropped (status suppressed)
    HOLD = "hold"  # it is held until the window has room again


class NotificationStatus(models.TextChoices):
    ACCEPTED = "accepted"  # stored, waiting for the route step
    SCHEDULED = "scheduled"  # stored, waiting for schedule_at
    PROCESSING = "processing"  # routed: deliveries exist and some are still in flight
    DELIVERED = "delivered"  # every delivery succeeded
    PARTIALLY_DELIVERED = "partially_delivered"  # some deliveries succeeded, some failed
    FAILED = "failed"  # every delivery failed
    UNROUTABLE = "unroutable"  # no channel could reach the recipient (see decisions)
    SUPPRESSED = "suppressed"  # every channel was suppressed by the user's preferences or rate limits
    DIGESTED = "digested"  # collapsed into a digest, sent with its window (see decisions)
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"  # due at next_attempt_at
    HELD = "held"  # waiting for quiet hours or a rate-limit window to end (release at next_attempt_at)
    SENDING = "sending"  # claimed by a worker (a lease: see NOTIFIER_CLAIM_LEASE_SECONDS)
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider confirmed it reached the device, mailbox, phone or inbox
    OPENED = "opened"
    CLICKED = "clicked"
    FAILED = "failed"  # a permanent error
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"  # not sent on purpose: see status_reason
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEAD = "dead"  # retries exhausted: the dead letter


class EventSource(models.TextChoices):
    """Who reported a delivery's status change (DeliveryEvent.source)."""

    WORKER = "worker"  # notifier's own pipeline: route, deliver, sweeper, holds, cancel
    SENDGRID = "sendgrid"  # SendGrid's Event Webhook
    TWILIO = "twilio"  # Twilio's status callback
    PIXEL = "pixel"  # the open pixel of an email
    CLICK = "click"  # the click redirect of an email
    APP = "app"  # the producer's app: push and in-app opens, clicks, dismissals; inbox reads
    ADMIN = "admin"  # an operator in Django admin


class AttemptOutcome(models.TextChoices):
    """How one delivery attempt ended (DeliveryAttempt.outcome); the three error kinds are ProviderError.kind."""

    SENT = "sent"  # the provider took it (sent, or delivered when the provider is the destination)
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RATE_LIMITED = "rate_limited"
    WORKER_LOST = "worker_lost"  # the worker died holding the claim; the sweeper counted the attempt
    EXPIRED = "expired"  # claimed after the notification's expires_at: not sent


NOTIFICATION_OPEN_STATUSES = (NotificationStatus.ACCEPTED, NotificationStatus.SCHEDULED)
# Not handed to a provider yet: a cancel stops these (pipeline/cancel.py). A new way for a delivery to wait
# joins this tuple, and cancel, the notification's closing rule and the API follow.
DELIVERY_WAITING_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.HELD)
DELIVERY_IN_FLIGHT_STATUSES = (*DELIVERY_WAITING_STATUSES, DeliveryStatus.SENDING)
DELIVERY_SUCCESS_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.OPENED,
    DeliveryStatus.CLICKED,
)
