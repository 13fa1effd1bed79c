"""Email through SendGrid's v3 Mail Send API, with the official `sendgrid` SDK.

Config keys (all strings unless noted), passed to build(config):
    api_key      SendGrid API key (required)
    from_email   sender address (required)
    from_name    sender display name (optional)
    host         API base URL, default "https://api.sendgrid.com" (tests point it at the fake server)
    timeout      seconds per HTTP request (number), default 10

One message is one request: a personalization for `message.to` carrying custom_args notification_id and
delivery_id (SendGrid echoes custom_args in every Event Webhook event, so a webhook finds its delivery),
a text/plain part and, when there is HTML, a text/html part, the X-Notification-ID header plus
`message.headers` (List-Unsubscribe, ...), and categories [type_key, category].

Errors (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors):
    400 whose error names a recipient address as invalid   PermanentError(target_gone=True)
    other 4xx (400 bad payload, 401/403 bad key, 413)      PermanentError
    429                                                    RateLimited(retry_after from Retry-After or
                                                           X-RateLimit-Reset)
    5xx, connection errors, timeouts                       TransientError
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import time
from email.utils import parsedate_to_datetime

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    RateLimited,
    SendResult,
    TransientError,
)

logger = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT = 10.0

# The error's `field` when SendGrid rejects one recipient, e.g. "personalizations.0.to.0.email".
RECIPIENT_FIELD = re.compile(r"^personalizations\.\d+\.(to|cc|bcc)\.\d+\.email$")


class SendGridProvider(Provider):
    """Sends one email per request through SendGrid. See the module docstring for config and errors."""

    name = "sendgrid"
    channel = "email"

    def __init__(self, api_key: str, from_email: str, from_name: str = "", host: str = DEFAULT_HOST,
                 timeout: float = DEFAULT_TIMEOUT):
        self.api_key = api_key
        self.from_email = from_email
        self.from_name = from_name
        self.host = host
        self.timeout = timeout
        # Never let the SDK fall back to the SENDGRID_API_KEY environment variable: config comes only from
        # build(). A missing key makes SendGrid answer 401 (a PermanentError), and check() reports it.
        self.client = SendGridAPIClient(api_key=api_key or "missing-api-key", host=host)
        # The SDK has no timeout argument; its HTTP client passes this one to every request it builds.
        self.client.client.timeout = timeout

    def send(self, message: Message) -> SendResult:
        """Send one email. Returns SendResult(provider_message_id=X-Message-Id) on 202, or raises
        PermanentError / TransientError / RateLimited as listed in the module docstring."""
        try:
            response = self.client.send(self.payload(message))
        except HTTPError as error:
            raise self._error_from_answer(error, message) from error
        except (OSError, http.client.HTTPException) as error:
            # URLError, ConnectionRefusedError and socket timeouts are OSErrors; a dropped connection
            # can also surface as http.client.RemoteDisconnected or BadStatusLine.
            logger.warning("SendGrid: connection failed for delivery %s: %s", message.delivery_id, error)
            raise TransientError(f"SendGrid unreachable: {error}", code="connection") from error

        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        logger.info("SendGrid: sent to %s (delivery %s, message %s)", message.to, message.delivery_id, message_id)
        return SendResult(provider_message_id=message_id)

    def payload(self, message: Message) -> dict:
        """The Mail Send JSON body for one message (v3 format)."""
        sender = {"email": self.from_email}
        if self.from_name:
            sender["name"] = self.from_name

        # SendGrid wants text/plain before text/html, and rejects empty content values.
        content = []
        if message.body or not message.html_body:
            content.append({"type": "text/plain", "value": message.body})
        if message.html_body:
            content.append({"type": "text/html", "value": message.html_body})

        payload = {
            "personalizations": [
                {
                    "to": [{"email": message.to}],
                    # custom_args values must be strings.
                    "custom_args": {
                        "notification_id": str(message.notification_id),
                        "delivery_id": str(message.delivery_id),
                    },
                }
            ],
            "from": sender,
            "subject": message.subject,
            "content": content,
            "headers": {"X-Notification-ID": str(message.notification_id), **message.headers},
        }
        categories = list(dict.fromkeys(c for c in (message.type_key, message.category) if c))
        if categories:
            payload["categories"] = categories
        # notifier tracks opens and clicks itself, by the type's setting (notifier/tracking.py): the account's
        # own tracking would wrap tracked links a second time, and track the email a type says not to.
        payload["tracking_settings"] = {"click_tracking": {"enable": False, "enable_text": False},
                                        "open_tracking": {"enable": False}}
        return payload

    def _error_from_answer(self, error: HTTPError, message: Message):
        status = int(error.status_code)
        errors = _error_list(error.body)
        text = "; ".join(e.get("message") or "" for e in errors) or f"HTTP {status}"
        logger.warning("SendGrid: %s for %s (delivery %s): %s", status, message.to, message.delivery_id, text)

        if status == 429:
            return RateLimited(f"SendGrid rate limit: {text}", retry_after=_retry_after(error.headers),
                               code="429")
        if status >= 500:
            return TransientError(f"SendGrid server error: {text}", code=str(status))
        if status == 400:
            return PermanentError(f"SendGrid refused the message: {text}", code="400",
                                  target_gone=any(_names_invalid_recipient(e) for e in errors))
        return PermanentError(f"SendGrid refused the request: {text}", code=str(status))

    def check(self) -> list[str]:
        problems = []
        if not self.api_key:
            problems.append("SendGrid: no api_key configured")
        if not self.from_email:
            problems.append("SendGrid: no sender (from_email) configured")
        elif "@" not in self.from_email:
            problems.append(f"SendGrid: from_email {self.from_email!r} is not an email address")
        return problems

    def close(self) -> None:
        """Nothing to release: the SDK opens a new connection for every request."""


def _error_list(body) -> list[dict]:
    """SendGrid's {"errors": [{"message", "field", "help"}]} as a list, [] when the body is not that."""
    try:
        parsed = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (TypeError, ValueError, UnicodeDecodeError):
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _names_invalid_recipient(error: dict) -> bool:
    """True for SendGrid's "Does not contain a valid address." on a recipient's email field, and only
    then: an invalid sender or a malformed payload is our problem, not a dead address."""
    field = error.get("field") or ""
    text = (error.get("message") or "").lower()
    return bool(RECIPIENT_FIELD.match(field)) and "valid" in text


def _retry_after(headers) -> float | None:
    """Seconds to wait, from Retry-After (seconds or an HTTP date) or X-RateLimit-Reset (a Unix time)."""
    if headers is None:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None


def build(config: dict) -> SendGridProvider:
    """A SendGridProvider from config keys api_key, from_email, from_name, host, timeout."""
    return SendGridProvider(
        api_key=config.get("api_key") or "",
        from_email=config.get("from_email") or "",
        from_name=config.get("from_name") or "",
        host=config.get("host") or DEFAULT_HOST,
        timeout=float(config.get("timeout") or DEFAULT_TIMEOUT),
    )
