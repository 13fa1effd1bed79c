"""The bench's data in notifier's tables, through the ORM (bench/run.py has set up Django on the bench
database): a producer, a `bench_order` type whose templates render the bench reference into every message,
and a pool of users reachable on every channel (an iPhone, an Android phone, an email address, a number)."""
from __future__ import annotations

from bench.tokens import android_token, ios_token, push_token
from notifier.models import Device, NotificationType, Producer, Recipient, Template

TYPE_KEY = "bench_order"
USER_PREFIX = "bench-u"
# `{{ bench_ref }}` in every message lets the fake servers report when each one arrived (bench/fakes.py).
TEMPLATES = {
    "push": {"title": "Order shipped", "body": "Order {{ order_id }} ships ({{ bench_ref }})."},
    "email": {
        "subject": "Order {{ order_id }} shipped",
        "body": "Order {{ order_id }} ships with {{ carrier }} ({{ bench_ref }}).",
        "html_body": "<p>Order <b>{{ order_id }}</b> ships with {{ carrier }} ({{ bench_ref }}).</p>",
    },
    "sms": {"body": "Order {{ order_id }} ships ({{ bench_ref }})."},
    "in_app": {"title": "Order shipped", "body": "Order {{ order_id }} ships.", "action_url": "/o/{{ order_id }}"},
}


def producer_key(name: str = "bench") -> str:
    """A fresh key for the bench producer (created on first use)."""
    producer = Producer.objects.filter(name=name).first()
    if producer is None:
        producer, key = Producer.create_with_key(
            name, ["send", "users:read", "users:write", "inbox:read", "tokens", "admin"])
    else:
        key = producer.rotate_key()
    if hasattr(producer, "quota_requests"):
        producer.quota_requests = 100_000_000  # the load generator is one producer; its quota must not cap it
    producer.save()
    return key


def bench_type() -> NotificationType:
    notification_type, _ = NotificationType.objects.update_or_create(
        key=TYPE_KEY,
        defaults={"name": "Bench order", "category": "transactional", "default_priority": "high",
                  "default_channels": ["push", "email", "sms", "in_app"],
                  "variables": {"order_id": {"required": True}, "carrier": {"default": "UPS"},
                                "bench_ref": {"default": ""}}},
    )
    for channel, fields in TEMPLATES.items():
        Template.objects.update_or_create(type=notification_type, channel=channel, language="en", version=1,
                                          defaults={**fields, "active": True})
    return notification_type


def users(count: int) -> None:
    """Users bench-u0 … bench-u<count-1>, each with an iPhone, an Android phone, an email and a number."""
    existing = Recipient.objects.filter(user_id__startswith=USER_PREFIX).count()
    if existing >= count:
        return
    Recipient.objects.bulk_create(
        [Recipient(user_id=f"{USER_PREFIX}{i}", email=f"{USER_PREFIX}{i}@example.com", phone=f"+1555{i:07d}")
         for i in range(count)],
        ignore_conflicts=True, batch_size=2000,
    )
    ids = dict(Recipient.objects.filter(user_id__startswith=USER_PREFIX).values_list("user_id", "id"))
    devices = []
    for i in range(count):
        recipient_id = ids[f"{USER_PREFIX}{i}"]
        devices.append(Device(recipient_id=recipient_id, platform="ios", token=ios_token(i)))
        devices.append(Device(recipient_id=recipient_id, platform="android", token=android_token(i)))
    Device.objects.bulk_create(devices, ignore_conflicts=True, batch_size=2000)


def setup(user_count: int) -> str:
    """Everything a notifier scenario needs; returns the producer key."""
    bench_type()
    users(user_count)
    return producer_key()



def push_users(count: int, per_user: int, prefix: str = "push-u") -> NotificationType:
    """Users with `per_user` Android devices each and nothing else, and a push-only type."""
    notification_type, _ = NotificationType.objects.update_or_create(
        key="bench_push", defaults={"category": "transactional", "default_priority": "high",
                                    "default_channels": ["push"], "variables": {"bench_ref": {"default": ""}}})
    Template.objects.update_or_create(type=notification_type, channel="push", language="en", version=1,
                                      defaults={"title": "Order shipped", "body": "Order 789 ships with UPS.",
                                                "active": True})
    if Device.objects.filter(token__startswith="bench-push-").count() >= count * per_user:
        return notification_type
    Recipient.objects.bulk_create([Recipient(user_id=f"{prefix}{i}") for i in range(count)], ignore_conflicts=True)
    ids = dict(Recipient.objects.filter(user_id__startswith=prefix).values_list("user_id", "id"))
    Device.objects.bulk_create(
        [Device(recipient_id=ids[f"{prefix}{i}"], platform="android", token=push_token(i, k))
         for i in range(count) for k in range(per_user)],
        ignore_conflicts=True, batch_size=5000,
    )
    return notification_type
