"""The small interface every channel meets. A new channel (Slack, webhook) is one module plus one line in
channels/__init__.py.

    targets(recipient, devices) -> (targets, reason): where this recipient can be reached on the channel,
        or no targets and the reason why ("recipient has no phone number")
    deliver(deliveries) -> yields (index, SendResult or ProviderError) for each delivery as its send
        completes, in any order, so that the delivery service records outcomes while the rest are still
        being sent; sets delivery.provider
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from notifier.providers.base import Message, PermanentError, ProviderError, SendResult
from notifier.providers.registry import providers_for


@dataclass(frozen=True)
class Target:
    address: str  # what Delivery.target holds: a token, an address, a number, a user id
    device: object = None
    platform: str = ""


class Channel:
    name = ""

    def targets(self, recipient, devices) -> tuple[list[Target], str]:
        raise NotImplementedError

    def deliver(self, deliveries) -> Iterator[tuple[int, SendResult | ProviderError]]:
        raise NotImplementedError


class ProviderChannel(Channel):
    """A channel whose messages go out through provider adapters.

    Each delivery has a chain of providers, first choice first (email: SendGrid, then SMTP). A transient
    or rate-limited failure moves the delivery to the next provider in the same attempt; a permanent
    error does not (an invalid address is invalid everywhere). Deliveries are sent in one batch per
    provider.
    """

    def providers_chain(self, delivery) -> list:
        return providers_for(self.name)

    def deliver(self, deliveries) -> Iterator[tuple[int, SendResult | ProviderError]]:
        chains, pending = [], []
        for index, delivery in enumerate(deliveries):
            try:
                chains.append(self.providers_chain(delivery))
                pending.append(index)
            except Exception as error:  # a bad credential file or setting: the operator must fix it
                chains.append([])
                yield index, PermanentError(f"provider not configured correctly: {error}", code="config")
        step = 0
        while pending:
            by_provider: dict = {}
            for index in pending:
                by_provider.setdefault(chains[index][step], []).append(index)
            pending = []
            for provider, indexes in by_provider.items():
                messages = [message_from_delivery(deliveries[i]) for i in indexes]
                for position, outcome in provider.send_as_completed(messages):
                    index = indexes[position]
                    deliveries[index].provider = provider.name
                    fails_over = isinstance(outcome, ProviderError) and not isinstance(outcome, PermanentError)
                    if fails_over and step + 1 < len(chains[index]):
                        pending.append(index)
                    else:
                        yield index, outcome
            step += 1


def message_from_delivery(delivery) -> Message:
    """The provider-neutral message for a claimed delivery (its notification, type and recipient loaded)."""
    notification = delivery.notification
    content = delivery.content
    return Message(
        delivery_id=delivery.id,
        notification_id=str(notification.id),
        channel=delivery.channel,
        to=delivery.target,
        user_id=notification.recipient.user_id,
        platform=delivery.device.platform if delivery.device_id else "",
        subject=content.get("subject", ""),
        title=content.get("title", ""),
        body=content.get("body", ""),
        html_body=content.get("html_body", ""),
        headers=content.get("headers", {}),
        action_url=content.get("action_url", ""),
        data={"notification_id": str(notification.id), **notification.data},
        priority=delivery.priority,
        expires_at=notification.expires_at,
        collapse_key=notification.collapse_key,
        badge=content.get("badge"),
        sound=content.get("sound", ""),
        type_key=notification.type.key,
        category=notification.type.category,
    )
