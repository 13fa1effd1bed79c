import hashlib
import secrets
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from .fields import JSONField

# What a producer key may do. Every API endpoint needs exactly one of these (README, "The API", producer keys).
SCOPE_SEND = "send"
SCOPE_USERS_READ = "users:read"
SCOPE_USERS_WRITE = "users:write"
SCOPE_INBOX_READ = "inbox:read"
SCOPE_TOKENS = "tokens"
SCOPE_ADMIN = "admin"
SCOPE_CAMPAIGNS = "campaigns"
SCOPES = {
    SCOPE_SEND: "send notifications, read their status and the sandbox",
    SCOPE_USERS_READ: "read users, their devices and preferences",
    SCOPE_USERS_WRITE: "create and change users, register and remove devices, change preferences",
    SCOPE_INBOX_READ: "read any user's inbox and mark it read",
    SCOPE_TOKENS: "issue recipient tokens (each reads its own user's inbox and preferences)",
    SCOPE_ADMIN: "manage notification types and templates",
    # Its own scope, not "send": a campaign reaches a segment ({"all": true} is everyone), so a key that
    # sends a service's transactional notifications cannot message every user unless it is given this too.
    SCOPE_CAMPAIGNS: "create, dry run, pause, resume, cancel and read campaigns (one message to a segment)",
}
KEY_PREFIX = "nk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_URL_MAX_LENGTH = 500


def scopes_validate(value) -> None:
    if not isinstance(value, list) or not all(isinstance(scope, str) for scope in value):
        raise ValidationError("Scopes are a list of names.")
    unknown = [scope for scope in value if scope not in SCOPES]
    if unknown:
        raise ValidationError(f"Unknown scope {', '.join(map(repr, unknown))}; choose from {', '.join(SCOPES)}.")


def scopes_ordered(scopes) -> list[str]:
    """Scopes without repeats, in the order of SCOPES, so that a producer's list reads the same everywhere."""
    wanted = set(scopes)
    return [scope for scope in SCOPES if scope in wanted]


def webhook_url_validate(value: str) -> None:
    """A producer's webhook URL: http or https, with a host, without credentials (they would be logged and
    shown in admin; the signature is the authentication), at most WEBHOOK_URL_MAX_LENGTH characters."""
    if not value:
        return
    if len(value) > WEBHOOK_URL_MAX_LENGTH:
        raise ValidationError(f"At most {WEBHOOK_URL_MAX_LENGTH} characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as error:
        raise ValidationError(f"Not a URL: {error}.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Use an http:// or https:// URL.")
    if not parts.hostname:
        raise ValidationError("The URL needs a host.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("No credentials in the URL: the producer checks the Notifier-Signature header.")
    if any(character.isspace() for character in value):
        raise ValidationError("No spaces in the URL.")


def hash_key(key: str) -> str:
    # API keys carry 256 random bits, so one fast hash is enough and keeps the per-request lookup cheap.
    return hashlib.sha256(key.encode()).hexdigest()


class Producer(models.Model):
    """A backend that calls the API. Its key is shown once, at creation or rotation, and stored hashed."""

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    key_hint = models.CharField(max_length=16, help_text="The first characters of the key, to recognise it.")
    scopes = JSONField(default=list, validators=[scopes_validate], help_text="What the key may do.")
    is_active = models.BooleanField(default=True)
    quota_requests = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Requests allowed per NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS; empty: the settings default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Producer webhooks (notifier/producer_webhooks.py): status events are POSTed here, signed with the
    # secret. The secret is kept readable (it signs), generated when a URL is first set, rotated in admin.
    webhook_url = models.CharField(
        max_length=WEBHOOK_URL_MAX_LENGTH, blank=True, validators=[webhook_url_validate],
        help_text="Where notifier POSTs this producer's status events (http or https); empty: no webhook.",
    )
    webhook_secret = models.CharField(max_length=64, blank=True,
                                      help_text="Signs the events (Notifier-Signature); generated with the URL.")
    # Set when a POST failed: no new batch is sent before then, so a down endpoint is not hammered by the
    # events that keep arriving meanwhile. Cleared by the next success and by a replay in admin.
    webhook_paused_until = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if self.webhook_url and not self.webhook_secret:
            self.rotate_webhook_secret()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "webhook_secret"}
        super().save(*args, **kwargs)

    def rotate_webhook_secret(self) -> str:
        """Give the producer a new webhook secret and return it; events are signed with it once saved."""
        self.webhook_secret = WEBHOOK_SECRET_PREFIX + secrets.token_hex(24)
        return self.webhook_secret

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def rotate_key(self) -> str:
        """Give the producer a new key and return it; the old key stops working once saved."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.key_hash = hash_key(key)
        self.key_hint = key[:10]
        return key

    @classmethod
    def create_with_key(cls, name: str, scopes: list[str]) -> tuple["Producer", str]:
        scopes_validate(list(scopes))
        producer = cls(name=name, scopes=scopes_ordered(scopes))
        key = producer.rotate_key()
        producer.save()
        return producer, key
