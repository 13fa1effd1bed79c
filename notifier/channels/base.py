"""The small interface every channel meets. A new channel (Slack, webhook) is one module plus one line in
channels/__init__.py.

    targets(recipient, devices) -> (targets, reason): where this recipient can be reached on the channel,
        or no targets and the reason why ("recipient has no phone number")
    deliver(deliveries) -> yields (index, SendResult or ProviderError) for each delivery as its send
        completes, in any order, so that the delivery service records outcomes while the rest are still
        being sent; sets delivery.provider
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone

from notifier.providers.base import Message, PermanentError, ProviderError, RateLimited, SendDeferred, SendResult
from notifier.providers.circuit import circuit_admit, circuit_record, iso_time
from notifier.providers.registry import providers_for
from notifier.providers.send_rate import send_rate_limit, send_tokens_take


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
    provider, handed over a group at a time (Provider.group_size_for: what one call keeps in flight, or
    one SendGrid batch of up to 1,000 low-priority emails): before each group the provider's circuit
    (providers/circuit.py) and send rate (providers/send_rate.py) are asked, one Redis round trip each, and
    the group takes one send token per message. While the circuit is open, the deliveries go to the next
    provider at once, without waiting for a timeout; with none left they are deferred (SendDeferred) until
    the circuit may close, which is no attempt. Over the send rate, a group waits for its tokens (a second at most) or is deferred likewise.
    """

    def providers_chain(self, delivery) -> list:
        return providers_for(self.name)

    def message_for(self, delivery) -> Message:
        """The message a provider sends for this delivery; a channel may change it (email adds tracking)."""
        return message_from_delivery(delivery)

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
                messages = [self.message_for(deliveries[i]) for i in indexes]
                for position, outcome in send_guarded(provider, messages):
                    index = indexes[position]
                    deliveries[index].provider = provider.name  # deferred: the provider it waits for
                    fails_over = isinstance(outcome, ProviderError) and not isinstance(outcome, PermanentError)
                    if fails_over and step + 1 < len(chains[index]):
                        pending.append(index)
                    else:
                        yield index, outcome
            step += 1


# A group over the provider's send rate sleeps for its tokens when the next one is due within this many
# seconds, and is deferred (in the database, like a retry) when it is due later.
MAX_SEND_RATE_SLEEP_SECONDS = 1.0


def send_guarded(provider, messages: list[Message]) -> Iterator[tuple[int, SendResult | ProviderError]]:
    """provider.send_as_completed(messages), a group at a time, behind the provider's circuit and send
    rate: yields (position, outcome) for every message, SendDeferred for those not sent."""
    position = 0
    while position < len(messages):
        admission = circuit_admit(provider.name)
        if admission.verdict == "wait":
            until = datetime.fromtimestamp(admission.until, tz=dt_timezone.utc)
            deferred = SendDeferred(
                f"{provider.name} circuit open: not sent, waiting until {iso_time(admission.until)}",
                until=until, code="circuit_open",
            )
            for rest in range(position, len(messages)):
                yield rest, deferred
            return
        probe = admission.verdict == "probe"
        size = provider.group_size_for(messages[position])
        wanted = 1 if probe else min(size, len(messages) - position)
        # A group larger than the provider's usual one is a batch, one request: it waits (a second at most)
        # for all its tokens rather than going out as a sliver of itself now.
        granted, wait = send_tokens_wait(provider.name, wanted, whole=size > provider.group_size)
        if not granted:
            until = timezone.now() + timedelta(seconds=wait)
            deferred = SendDeferred(f"{provider.name} over its send rate: not sent, waiting {wait:.1f} s",
                                    until=until, code="send_rate")
            # A probe claimed here and not sent reports nothing: its lease lets another worker probe later.
            for rest in range(position, len(messages)):
                yield rest, deferred
            return
        group = messages[position:position + granted]
        succeeded, trailing_failures, last_failure = False, 0, None
        for offset, outcome in provider.send_as_completed(group):
            if isinstance(outcome, (SendResult, PermanentError)):  # an answer: the provider is up
                succeeded, trailing_failures = True, 0
            elif not isinstance(outcome, RateLimited) and outcome is not last_failure:  # a 429 is no outage
                # The messages of one failed request (a SendGrid batch) share its error: one failure.
                trailing_failures += 1
                last_failure = outcome
            yield position + offset, outcome
        if probe or trailing_failures or admission.failures:
            circuit_record(provider.name, succeeded=succeeded, trailing_failures=trailing_failures, probe=probe)
        position += granted


def send_tokens_wait(provider: str, wanted: int, whole: bool = False) -> tuple[int, float]:
    """Take up to `wanted` send tokens, sleeping for them while the next is due within
    MAX_SEND_RATE_SLEEP_SECONDS: (granted, 0) or, when none could be had that soon, (0, seconds to wait).

    `whole` (a batch): rather than the few tokens there are now, take all `wanted`, or a second's worth of
    the rate when that is fewer (the bucket's burst), sleeping for the rest, MAX_SEND_RATE_SLEEP_SECONDS
    at most: then as many as it has."""
    rate = send_rate_limit(provider)
    if whole and rate:
        wanted = min(wanted, max(1, int(rate)))
    deadline = time.monotonic() + MAX_SEND_RATE_SLEEP_SECONDS
    granted = 0
    while True:
        taken, wait = send_tokens_take(provider, wanted - granted)
        granted += taken
        if granted == wanted or (granted and not whole):
            return granted, 0.0
        if not granted and wait > MAX_SEND_RATE_SLEEP_SECONDS:
            return 0, wait
        if whole and rate:
            wait = max(wait, (wanted - granted) / rate)  # the rest at once, not a token per round trip
            if granted and time.monotonic() + wait > deadline:
                return granted, 0.0
        time.sleep(min(wait, max(0.0, deadline - time.monotonic())) if granted else wait)


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
