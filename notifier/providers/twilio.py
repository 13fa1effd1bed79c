"""SMS through Twilio Programmable Messaging, with the official `twilio` SDK.

Config keys, passed to build(config):
    account_sid            Twilio Account SID, "AC…" (required)
    auth_token             Twilio auth token (required)
    from_number            sender number in E.164 form; used when no messaging_service_sid is set
    messaging_service_sid  Messaging Service SID, "MG…"; takes precedence over from_number
    status_callback_url    URL Twilio posts delivery status to (optional)
    base_url               API base URL, default "https://api.twilio.com" (tests point it at the fake)
    max_segments           most segments one SMS may cost (number), default 10
    timeout                seconds per HTTP request (number), default 10

A body longer than max_segments segments (see sms_segments.count_segments) is refused with a
PermanentError before anything is sent.

Errors (https://www.twilio.com/docs/api/errors):
    21211 invalid 'To' number            PermanentError(code="21211") naming the number; the number is
                                         kept (no opt-out: the user did not ask to stop, and a corrected
                                         number must not inherit one)
    21610 recipient replied STOP         PermanentError(code="21610", target_gone=True): the service
                                         records the SMS opt-out
    20429, or HTTP 429                   RateLimited
    5xx, connection errors, timeouts     TransientError
    any other 4xx (bad credentials, …)   PermanentError
"""
from __future__ import annotations

import logging

from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    RateLimited,
    SendResult,
    TransientError,
    sent_log_level,
    session_read_environment_once,
)
from notifier.providers.sms_segments import count_segments

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.twilio.com"
DEFAULT_MAX_SEGMENTS = 10
DEFAULT_TIMEOUT = 10.0

# Twilio error codes after which the number must never be texted again: only the recipient's own STOP.
# The service records it as the recipient's SMS opt-out (sms_opted_out_at).
TARGET_GONE_CODES = {
    21610,  # https://www.twilio.com/docs/errors/21610 the recipient unsubscribed (replied STOP)
}
INVALID_TO = 21211  # https://www.twilio.com/docs/errors/21211 invalid 'To' phone number
TOO_MANY_REQUESTS = 20429  # https://www.twilio.com/docs/errors/20429

# The SDK reads TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_EDGE and TWILIO_REGION from os.environ
# unless it is given another, non-empty mapping; an edge or region would also rewrite base_url's host.
# Config comes only from build(), so the SDK gets this mapping instead.
SDK_ENVIRONMENT = {"NOTIFIER_TWILIO_CONFIG": "from build(config) only"}


class TwilioProvider(Provider):
    """Sends one SMS per request through Twilio. See the module docstring for config and errors."""

    name = "twilio"
    channel = "sms"

    def __init__(self, account_sid: str, auth_token: str, from_number: str = "", messaging_service_sid: str = "",
                 status_callback_url: str = "", base_url: str = DEFAULT_BASE_URL,
                 max_segments: int = DEFAULT_MAX_SEGMENTS, timeout: float = DEFAULT_TIMEOUT):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = status_callback_url
        self.base_url = base_url
        self.max_segments = max_segments
        self.timeout = timeout
        self.client = Client(
            account_sid,
            auth_token,
            http_client=TwilioHttpClient(timeout=timeout),
            environment=SDK_ENVIRONMENT,
        )
        # Messages live on the "api" domain; every request the SDK makes for them is built from its base_url.
        self.client.api.base_url = base_url
        session_read_environment_once(self.client.http_client.session, base_url)

    def send(self, message: Message) -> SendResult:
        """Send one SMS. Returns SendResult(provider_message_id=the message SID, "SM…") on 201, or raises
        PermanentError / TransientError / RateLimited as listed in the module docstring."""
        encoding, segments = count_segments(message.body)
        if segments > self.max_segments:
            logger.warning("Twilio: refused delivery %s: %s segments (%s), at most %s", message.delivery_id,
                           segments, encoding, self.max_segments)
            raise PermanentError(
                f"SMS body needs {segments} segments ({encoding}), more than the {self.max_segments} allowed",
                code="too_many_segments",
            )

        fields = {"to": message.to, "body": message.body}
        if self.messaging_service_sid:
            fields["messaging_service_sid"] = self.messaging_service_sid
        else:
            fields["from_"] = self.from_number
        if self.status_callback_url:
            fields["status_callback"] = self.status_callback_url

        try:
            sent = self.client.messages.create(**fields)
        except (TwilioRestException, TwilioServiceException) as error:
            raise self._error_from_answer(error, message) from error
        except RequestException as error:
            logger.warning("Twilio: connection failed for delivery %s: %s", message.delivery_id, error)
            raise TransientError(f"Twilio unreachable: {error}", code="connection") from error

        logger.log(sent_log_level(message), "Twilio: sent to %s (delivery %s, message %s, %s segments)",
                   message.to, message.delivery_id, sent.sid, segments)
        return SendResult(provider_message_id=sent.sid)

    def _error_from_answer(self, error: TwilioRestException | TwilioServiceException, message: Message):
        status = int(error.status)
        code = int(error.code) if error.code is not None else status
        text = getattr(error, "msg", None) or getattr(error, "detail", None) or getattr(error, "title", "")
        logger.warning("Twilio: %s (code %s) for %s (delivery %s): %s", status, code, message.to,
                       message.delivery_id, text)

        if code == TOO_MANY_REQUESTS or status == 429:
            # Twilio sends no Retry-After on Messages; the task's backoff decides the wait.
            return RateLimited(f"Twilio rate limit: {text}", code=str(code))
        if status >= 500:
            return TransientError(f"Twilio server error: {text}", code=str(code))
        if code == INVALID_TO:
            # Permanent for this message, but not an opt-out: fixing the recipient's phone must be enough.
            return PermanentError(f"Twilio: invalid 'To' number {message.to}: {text}", code=str(code))
        return PermanentError(f"Twilio refused the message: {text}", code=str(code),
                              target_gone=code in TARGET_GONE_CODES)

    def check(self) -> list[str]:
        problems = []
        if not self.account_sid:
            problems.append("Twilio: no account_sid configured")
        if not self.auth_token:
            problems.append("Twilio: no auth_token configured")
        if not self.from_number and not self.messaging_service_sid:
            problems.append("Twilio: no sender (from_number or messaging_service_sid) configured")
        if self.max_segments < 1:
            problems.append(f"Twilio: max_segments must be at least 1, not {self.max_segments}")
        return problems

    def close(self) -> None:
        """Close the SDK's pooled HTTP connections."""
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            session.close()


def build(config: dict) -> TwilioProvider:
    """A TwilioProvider from config keys account_sid, auth_token, from_number, messaging_service_sid,
    status_callback_url, base_url, max_segments, timeout."""
    return TwilioProvider(
        account_sid=config.get("account_sid") or "",
        auth_token=config.get("auth_token") or "",
        from_number=config.get("from_number") or "",
        messaging_service_sid=config.get("messaging_service_sid") or "",
        status_callback_url=config.get("status_callback_url") or "",
        base_url=config.get("base_url") or DEFAULT_BASE_URL,
        max_segments=int(config.get("max_segments", DEFAULT_MAX_SEGMENTS)),
        timeout=float(config.get("timeout") or DEFAULT_TIMEOUT),
    )
