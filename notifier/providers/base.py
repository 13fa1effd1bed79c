"""The contract every provider adapter meets.

An adapter has one job: turn a rendered Message into the provider SDK's call, and the SDK's answer into
either a SendResult or one of three error kinds. It never touches the database: the delivery service
decides what an error means for the delivery (retry, dead letter) and for the target (deactivate a device,
record an SMS opt-out).

    send(message) -> SendResult, or raises PermanentError / TransientError / RateLimited
    send_batch(messages) -> one SendResult or ProviderError per message, in the same order
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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


class Provider:
    """Base class for adapters. Subclasses set `name` and `channel` and implement `send`.

    `send_batch` sends many messages concurrently. The default uses a small thread pool, right for
    HTTP/1.1 SDKs; adapters whose SDK multiplexes (aioapns, firebase-admin's send_each_async) override it.
    """

    name = ""
    channel = ""
    batch_concurrency = 8

    def send(self, message: Message) -> SendResult:
        raise NotImplementedError

    def send_batch(self, messages: list[Message]) -> list[SendResult | ProviderError]:
        if len(messages) == 1:
            return [self._outcome(messages[0])]
        with ThreadPoolExecutor(max_workers=min(self.batch_concurrency, len(messages))) as pool:
            return list(pool.map(self._outcome, messages))

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


def session_read_environment_once(session: requests.Session, url: str) -> None:
    """Settle what requests reads from the environment on every request (proxies and no_proxy, the CA
    bundle, ~/.netrc) once, for the SDK sessions we keep per process. py-spy showed those per-request
    lookups at about 4% of a push worker's time. HTTPS_PROXY and REQUESTS_CA_BUNDLE still apply, as read
    when the provider is built; .netrc does not (our providers authenticate themselves)."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False
