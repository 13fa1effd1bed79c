"""Shared fixtures. Tests run against the real PostgreSQL and Redis (database 15, flushed per test)."""
import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from notifier.api import auth
from notifier.api.auth import producers_by_key_hash
from notifier.api.quota import quota_leases_clear
from notifier.api.serializers import notification_types_by_key
from notifier.models import Device, NotificationType, Producer, Recipient, Template
from notifier.producer_webhooks import producers_with_webhook_cache
from notifier.providers.registry import providers_reset
from notifier.redis_client import redis_clients_reset
from tests.support.redis_server import RedisServer

ORDER_TEMPLATES = {
    "push": {"title": "Order shipped", "body": "Order {{ order_id }} ships with {{ carrier }}."},
    "email": {
        "subject": "Order {{ order_id }} shipped",
        "body": "Order {{ order_id }} ships with {{ carrier }}.",
        "html_body": "<p>Order <b>{{ order_id }}</b> ships with {{ carrier }}.</p>",
    },
    "sms": {"body": "Order {{ order_id }} ships with {{ carrier }}."},
    "in_app": {"title": "Order shipped", "body": "Order {{ order_id }} ships.", "action_url": "/o/{{ order_id }}"},
}


@pytest.fixture(autouse=True)
def clean_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    redis_clients_reset()
    yield client
    client.flushdb()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which it may hang (SIGSTOP) without touching the shared one."""
    server = RedisServer(tmp_path / "redis-server.log")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_process_caches():
    # A test's rollback sends no post_delete signal: rows cached by an earlier test must not leak into it.
    producers_by_key_hash.clear()
    auth._checked_tokens.clear()  # a token checked under another test's SECRET_KEY
    notification_types_by_key.clear()
    producers_with_webhook_cache.clear()
    quota_leases_clear()  # leased from a Redis the test before flushed


@pytest.fixture(autouse=True)
def fresh_providers():
    providers_reset()
    yield
    providers_reset()


# What a key with "send" reaches since migration 0006 split it into scopes: everything but admin.
SENDER_SCOPES = ("send", "users:read", "users:write", "inbox:read", "tokens")


def make_producer(name="shop", scopes=SENDER_SCOPES):
    return Producer.create_with_key(name, list(scopes))


@pytest.fixture
def producer(db):
    producer, key = make_producer()
    producer.key = key
    return producer


@pytest.fixture
def api(producer):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {producer.key}")
    return client


@pytest.fixture
def admin_api(db):
    producer, key = make_producer("ops", (*SENDER_SCOPES, "admin"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def make_order_type(key="order_shipped", channels=("push", "email", "sms", "in_app"), languages=("en",), **fields):
    notification_type = NotificationType.objects.create(
        key=key,
        default_channels=list(channels),
        default_priority=fields.pop("default_priority", "high"),
        variables={"order_id": {"required": True}, "carrier": {"default": "UPS"}},
        **fields,
    )
    for language in languages:
        for channel in channels:
            texts = dict(ORDER_TEMPLATES[channel])
            if channel == "email" and notification_type.category == "marketing":  # must carry the link
                texts["body"] += " Unsubscribe: {{ unsubscribe_url }}"
                texts["html_body"] += '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
            Template.objects.create(type=notification_type, channel=channel, language=language, **texts)
    return notification_type


@pytest.fixture
def order_type(db):
    return make_order_type()


def make_reachable_user(user_id="u_42", devices=(("ios", "ios-token-1"), ("android", "android-token-1"))):
    """A recipient reachable on every channel: two devices, an email address and a phone number."""
    recipient = Recipient.objects.create(user_id=user_id, email=f"{user_id}@example.com", phone="+14155550100")
    for platform, token in devices:
        Device.objects.create(recipient=recipient, platform=platform, token=token)
    return recipient


@pytest.fixture
def reachable_user(db):
    return make_reachable_user()
