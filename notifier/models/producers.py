import hashlib
import secrets

from django.db import models

SCOPE_SEND = "send"
SCOPE_ADMIN = "admin"
KEY_PREFIX = "nk_"


def hash_key(key: str) -> str:
    # API keys carry 256 random bits, so one fast hash is enough and keeps the per-request lookup cheap.
    return hashlib.sha256(key.encode()).hexdigest()


class Producer(models.Model):
    """A backend that calls the API. Its key is shown once, at creation or rotation, and stored hashed."""

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    key_hint = models.CharField(max_length=16, help_text="The first characters of the key, to recognise it.")
    scopes = models.JSONField(default=list, help_text='"send" to send notifications, "admin" to manage types.')
    is_active = models.BooleanField(default=True)
    quota_requests = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Requests allowed per NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS; empty: the settings default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

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
        producer = cls(name=name, scopes=scopes)
        key = producer.rotate_key()
        producer.save()
        return producer, key
