"""The contract every provider adapter meets.

An adapter has one job: turn a rendered Message into the provider SDK's call, and the SDK's answer into
either a SendResult or one of three error kinds. It never touches the database: the delivery service
decides what an error means for the delivery (retry, dead letter) and for the target (deactivate a device,
record an SMS opt-out).

    send(message) -> SendResult, or raises PermanentError / TransientError / RateLimited
    send_as_completed(messages) -> yields (index, SendResult or ProviderError) for each message as its send
        completes, in any order: the delivery service records outcomes while the rest are still being sent
    send_batch(messages) -> one SendResult or ProviderError per message, in the same order
    group_size_for(message) -> how many messages, from this one on, the channel hands to one
        send_as_completed call at most (group_size unless the adapter batches some messages)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

import requests


@dataclass(frozen=True)
class Message:
    """One rendered message for one target. Built by the delivery service from a Delivery row."""

    delivery_id: int
    notification_id: str
    channel: str  # "push", "email" or "sms"
    to: str  # device token, email address or E.164 phone number
    user_id: str = ""  # the recipient's id, for logs and the sandbox
    platform: str = ""  # push only: "ios", "android" or "web"
    subject: str = ""  # email
    title: str = ""  # push
    body: str = ""  # plain text: push alert body, SMS text, email text part
    html_body: str = ""  # email
    action_url: str = ""
    data: dict = field(default_factory=dict)  # custom key/values for the app (push) or the provider
    priority: str = "medium"  # "high", "medium" or "low"
    expires_at: datetime | None = None
    collapse_key: str = ""
    type_key: str = ""
    category: str = ""  # "transactional", "marketing" or "system"
    headers: dict = field(default_factory=dict)  # extra email headers (List-Unsubscribe, ...)
    badge: int | None = None
    sound: str = ""


def sent_log_level(message: Message) -> int:
    """The level of a provider's "sent" line: DEBUG for low priority, whose successes a campaign counts in
    the deliver step's one summary line per claim (pipeline/dispatch.py), INFO for the rest."""
    return logging.DEBUG if message.priority == "low" else logging.INFO


@dataclass(frozen=True)
class SendResult:
    """The provider took the message. `status` is "sent" (accepted, confirmation may come later by
    webhook) or "delivered" (the provider is itself the destination, as the sandbox is)."""

    provider_message_id: str = ""
    status: str = "sent"


class ProviderError(Exception):
    """A provider refused or failed a message.

    `code` is the provider's own short error name or number ("Unregistered", "21610"), kept for the
    delivery's last_error. `target_gone` means the target must never be sent to again: the service
    deactivates the device token, or records the phone's SMS opt-out.
    """

    kind = "error"

    def __init__(self, message: str, *, code: str = "", target_gone: bool = False):
        super().__init__(message)
        self.code = str(code)
        self.target_gone = target_gone

    def __str__(self):
        text = super().__str__()
        return f"{self.code}: {text}" if self.code and not text.startswith(self.code) else text


class PermanentError(ProviderError):
    """Never retry: the same request would fail the same way (bad token, invalid address, bad payload)."""

    kind = "permanent"


class TransientError(ProviderError):
    """Retry with exponential backoff and jitter (5xx, timeouts, connection errors)."""

    kind = "transient"


class RateLimited(ProviderError):
    """Retry, but not before `retry_after` seconds (the provider's Retry-After when it gave one)."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = ""):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class SendDeferred(ProviderError):
    """Not sent, and not an attempt: the provider's circuit is open, or it is over its send rate, and no
    other provider of the channel's chain could take the message. The delivery waits until `until` (an
    aware datetime). Made by the channel (notifier/channels/base.py), never by an adapter."""

    kind = "deferred"

    def __init__(self, message: str, *, until: datetime, code: str = ""):
        super().__init__(message, code=code)
        self.until = until


class Provider:
    """Base class for adapters. Subclasses set `name` and `channel` and implement `send`.

    `send_as_completed` sends many messages concurrently and hands back each outcome as it comes. The
    default uses a small thread pool, right for HTTP/1.1 SDKs; adapters whose SDK multiplexes or batches
    (aioapns, firebase-admin's send_each) override it. `send_batch` is the same, collected in order.
    """

    name = ""
    channel = ""
    batch_concurrency = 8  # sends in flight at once

    @property
    def group_size(self) -> int:
        """How many messages the channel hands over in one call, between two looks at the provider's
        circuit and send rate: what one call keeps in flight."""
        return self.batch_concurrency

    def group_size_for(self, message: Message) -> int:
        """group_size, for a group that starts with `message`. An adapter that sends some messages in one
        request (SendGrid's low-priority batches) answers its batch size for those: the group is then one
        request, and takes its send tokens and its look at the circuit once."""
        return self.group_size

    def send(self, message: Message) -> SendResult:
        raise NotImplementedError

    def send_batch(self, messages: list[Message]) -> list[SendResult | ProviderError]:
        outcomes: list[SendResult | ProviderError | None] = [None] * len(messages)
        for index, outcome in self.send_as_completed(messages):
            outcomes[index] = outcome
        return outcomes

    def send_as_completed(self, messages: list[Message]) -> Iterator[tuple[int, SendResult | ProviderError]]:
        """Send on a thread pool, `batch_concurrency` at a time (see completed_in_window)."""
        if not messages:
            return
        if len(messages) == 1:
            yield 0, self._outcome(messages[0])
            return
        workers = min(self.batch_concurrency, len(messages))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def start(index):
                return pool.submit(self._outcome, messages[index])

            for index, future in completed_in_window(start, len(messages), workers):
                yield index, future.result()

    def _outcome(self, message: Message) -> SendResult | ProviderError:
        try:
            return self.send(message)
        except ProviderError as error:
            return error
        except Exception as error:  # an SDK bug or an unexpected answer: retry rather than lose it
            return TransientError(f"{type(error).__name__}: {error}", code="unexpected")

    def check(self) -> list[str]:
        """Problems with this provider's configuration, for `manage.py check`. Empty when fine."""
        return []

    def close(self) -> None:
        """Release connections (called at worker shutdown)."""


def completed_in_window(start: Callable[[int], Future], count: int, window: int,
                        timeout: float | None = None) -> Iterator[tuple[int, Future]]:
    """Start items 0 … count-1 with `start(index)`, at most `window` at a time, and yield (index, future)
    as each one completes. A new one starts only when the caller has taken a completed one, so sends whose
    outcome the caller has not recorded yet never pile up while it writes what it was given (what a worker
    killed mid-batch would send again): at most `window` are in flight or done but not taken.

    Raises TimeoutError when nothing completes for `timeout` seconds. Whatever is still running when the
    caller stops (or on that timeout) is cancelled."""
    waiting = iter(range(count))
    running: dict[Future, int] = {}

    def start_next():
        index = next(waiting, None)
        if index is not None:
            running[start(index)] = index

    for _ in range(window):
        start_next()
    try:
        while running:
            done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                raise TimeoutError(f"nothing completed within {timeout} s")
            for future in done:
                yield running.pop(future), future
                start_next()
    finally:
        for future in running:
            future.cancel()


def session_read_environment_once(session: requests.Session, url: str) -> None:
    """Settle what requests reads from the environment on every request (proxies and no_proxy, the CA
    bundle, ~/.netrc) once, for the SDK sessions we keep per process. py-spy showed those per-request
    lookups at about 4% of a push worker's time. HTTPS_PROXY and REQUESTS_CA_BUNDLE still apply, as read
    when the provider is built; .netrc does not (our providers authenticate themselves)."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False
