"""Set up a demo: a producer whose key is kept in var/demo-producer-key, and an `order_shipped` type with
templates on every channel. Run again (every `make run`), it keeps the same key, so a shell's $KEY stays
valid across restarts."""
from django.conf import settings
from django.core.management.base import BaseCommand

from notifier.models import NotificationType, Producer, Template
from notifier.models.producers import SCOPES, hash_key

KEY_FILE = settings.BASE_DIR / "var" / "demo-producer-key"

DEMO_TEMPLATES = {
    "push": {"title": "Your order shipped", "body": "Order {{ order_id }} is on its way with {{ carrier }}."},
    "email": {
        "subject": "Order {{ order_id }} has shipped",
        "body": "Hi,\n\nOrder {{ order_id }} is on its way with {{ carrier }}.\n",
        "html_body": "<p>Hi,</p><p>Order <b>{{ order_id }}</b> is on its way with {{ carrier }}.</p>",
    },
    "sms": {"body": "Order {{ order_id }} shipped with {{ carrier }}."},
    "in_app": {"title": "Order shipped", "body": "Order {{ order_id }} is on its way with {{ carrier }}.",
               "action_url": "/orders/{{ order_id }}"},
}


class Command(BaseCommand):
    help = ("Create the demo producer and the order_shipped type; print the producer's key as the last line "
            "(kept in var/demo-producer-key and reused while it is valid).")

    def handle(self, **options):
        notification_type, _ = NotificationType.objects.update_or_create(
            key="order_shipped",
            defaults={
                "name": "Order shipped",
                "category": "transactional",
                "default_priority": "high",
                "default_channels": ["push", "email", "sms", "in_app"],
                "variables": {"order_id": {"required": True}, "carrier": {"default": "UPS"}},
            },
        )
        for channel, fields in DEMO_TEMPLATES.items():
            Template.objects.get_or_create(type=notification_type, channel=channel, language="en", version=1,
                                           defaults=fields)
        producer = Producer.objects.filter(name="demo").first()
        kept = KEY_FILE.read_text().strip() if KEY_FILE.exists() else ""
        if producer is None:
            producer, key = Producer.create_with_key("demo", list(SCOPES))  # the walk-through uses them all
        elif kept and hash_key(kept) == producer.key_hash and producer.is_active:
            key = kept
        else:  # the key was rotated in admin, or the file is gone: the key itself cannot be shown again
            key = producer.rotate_key()
            producer.is_active = True
            producer.save()
        KEY_FILE.parent.mkdir(exist_ok=True)
        KEY_FILE.write_text(key + "\n")
        KEY_FILE.chmod(0o600)
        self.stdout.write(f"Demo type 'order_shipped' is ready. Demo producer key (also in {KEY_FILE}):")
        self.stdout.write(key)
