"""Set up a demo: a producer with a fresh key, and an `order_shipped` type with templates on every channel."""
from django.core.management.base import BaseCommand

from notifier.models import NotificationType, Producer, Template
from notifier.models.producers import SCOPE_ADMIN, SCOPE_SEND

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
    help = "Create the demo producer (printing a new key as the last line) and the order_shipped type."

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
        if producer is None:
            producer, key = Producer.create_with_key("demo", [SCOPE_SEND, SCOPE_ADMIN])
        else:
            key = producer.rotate_key()
            producer.save()
        self.stdout.write("Demo type 'order_shipped' is ready. Demo producer key:")
        self.stdout.write(key)
