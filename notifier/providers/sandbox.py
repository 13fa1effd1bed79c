"""The built-in sandbox: records exactly what would have been sent, so notifier runs with no credentials.

Recorded messages show in Django admin and at GET /api/v1/sandbox/messages. Unlike real adapters the
sandbox writes to the database, because the database is where its messages are delivered.
"""
import json
from dataclasses import asdict

from django.core.serializers.json import DjangoJSONEncoder

from notifier.models import Notification, SandboxMessage

from .base import Message, Provider, SendResult


class SandboxProvider(Provider):
    name = "sandbox"

    def __init__(self, channel: str):
        self.channel = channel

    def send(self, message: Message) -> SendResult:
        return self.send_batch([message])[0]

    def send_as_completed(self, messages: list[Message]):
        # Each message is listed to the producer of its notification only (GET /api/v1/sandbox/messages).
        producers = {
            str(notification_id): producer_id
            for notification_id, producer_id in Notification.objects.filter(
                id__in={m.notification_id for m in messages}
            ).values_list("id", "producer_id")
        }
        # One insert for the batch: every message completes at once. ignore_conflicts: a delivery re-sent
        # after its worker died is recorded once.
        SandboxMessage.objects.bulk_create(
            [
                SandboxMessage(
                    producer_id=producers.get(str(m.notification_id)),
                    channel=m.channel,
                    user_id=m.user_id,
                    to=m.to,
                    notification_id=m.notification_id,
                    delivery_id=m.delivery_id,
                    message=_jsonable(m),
                )
                for m in messages
            ],
            ignore_conflicts=True,
        )
        for index, m in enumerate(messages):
            yield index, SendResult(provider_message_id=f"sandbox-{m.delivery_id}", status="delivered")


def _jsonable(message: Message) -> dict:
    return json.loads(json.dumps(asdict(message), cls=DjangoJSONEncoder))


def build(config: dict) -> SandboxProvider:
    return SandboxProvider(channel=config["channel"])
