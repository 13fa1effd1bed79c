from .choices import (  # noqa: F401
    DELIVERY_IN_FLIGHT_STATUSES,
    DELIVERY_SUCCESS_STATUSES,
    DELIVERY_WAITING_STATUSES,
    NOTIFICATION_OPEN_STATUSES,
    AttemptOutcome,
    Category,
    Channel,
    Digest,
    DeliveryStatus,
    EventSource,
    NotificationStatus,
    Platform,
    Priority,
    RateLimitAction,
)
from .campaigns import (  # noqa: F401
    CAMPAIGN_FINAL_STATUSES,
    CAMPAIGN_STOPPED_STATUSES,
    Campaign,
    CampaignChunk,
    CampaignMember,
    CampaignStatus,
    RecipientTopic,
)
from .deliveries import DeadLetter, Delivery, DeliveryAttempt, DeliveryEvent, PendingProviderEvent  # noqa: F401
from .devices import Device  # noqa: F401
from .digests import DigestBatch  # noqa: F401
from .inbox import InboxItem  # noqa: F401
from .notifications import IdempotencyKey, Notification  # noqa: F401
from .producer_events import ProducerEvent, ProducerEventStatus  # noqa: F401
from .producers import Producer  # noqa: F401
from .recipients import Recipient, Unsubscription  # noqa: F401
from .sandbox import SandboxMessage  # noqa: F401
from .suppressions import EmailSuppression, WebhookEventSeen  # noqa: F401
from .templates import NotificationType, Template, TrackEngagement  # noqa: F401
