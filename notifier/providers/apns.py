"""Apple Push Notification service (APNs) adapter, over aioapns with token (.p8) authentication.

`build(config)` takes:

    key             the .p8 private key text (or key_file: a path to the .p8 file)
    key_id          the key's 10-character id (the JWT `kid`)
    team_id         the Apple developer team id (the JWT `iss`)
    topic           the app's bundle id (apns-topic)
    use_sandbox     True for Apple's development (sandbox) server, for development builds; default False
    host, port      another APNs endpoint (a proxy or a test server); default Apple's host and 443
    ca_file         PEM file of CAs to trust instead of the system store (for host/port above)
    max_connections HTTP/2 connections in the pool, default 10 (each carries many concurrent streams)
    timeout         seconds to wait for one answer, default 10
    max_connection_attempts  how often aioapns tries to connect before giving up, default 3

aioapns is asyncio and our workers are synchronous, so each process runs one event loop in a daemon
thread (`EventLoopThread`) that owns every APNs client and its connection pool; `send` and `send_as_completed`
submit coroutines to it. A forked worker child starts its own loop and client on first use.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import ssl
import time
import uuid
from datetime import datetime, timezone

from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import (
    APNsDevelopmentClientProtocol,
    APNsProductionClientProtocol,
    JWTAuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionError as APNsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    SendResult,
    TransientError,
    completed_in_window,
    sent_log_level,
)
from notifier.providers.event_loop import EventLoopThread

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096  # Apple's limit for regular remote notifications
PRIORITY_IMMEDIATE, PRIORITY_CONSIDERATE = 10, 5
# Apple: "APNs rejects a provider token refreshed more often than every 20 minutes"
# (TooManyProviderTokenUpdates). One forced refresh serves every request that saw the old token.
MIN_SECONDS_BETWEEN_FORCED_REFRESHES = 60

# Reasons after which the token must never be used again.
# https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
TARGET_GONE_REASONS = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic", "ExpiredToken"}


class APNsProvider(Provider):
    """Sends push notifications to iOS devices through APNs. See the module docstring for config."""

    name = "apns"
    channel = "push"
    # Requests in flight at once, multiplexed over the pool's HTTP/2 connections: enough to keep them busy,
    # and what a worker killed mid-batch may send twice.
    batch_concurrency = 100

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        topic: str,
        use_sandbox: bool = False,
        host: str = "",
        port: int = 0,
        ca_file: str = "",
        max_connections: int = 10,
        timeout: float = 10.0,
        max_connection_attempts: int = 3,
        key_file: str = "",
    ):
        self.key = key
        self.key_file = key_file
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.use_sandbox = use_sandbox
        self.host = host
        self.port = int(port or 0)
        self.ca_file = ca_file
        self.max_connections = int(max_connections)
        self.timeout = float(timeout)
        self.max_connection_attempts = int(max_connection_attempts)
        self._client: APNs | None = None
        self._client_pid = 0
        self._last_forced_refresh = 0.0
        self._credentials_checked = False

    # --- the contract -----------------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        """Send one notification. Returns SendResult(provider_message_id=apns-id) or raises
        PermanentError / TransientError / RateLimited."""
        outcome = self.send_batch([message])[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def send_as_completed(self, messages: list[Message]):
        """Send the messages over the shared HTTP/2 pool, `batch_concurrency` in flight at once, yielding
        each outcome as Apple answers it.

        Missing or unusable credentials fail every message permanently (code "config") before anything is
        sent: retrying cannot fix a configuration, and `manage.py check` names the problem."""
        try:
            self._check_credentials()
        except PermanentError as error:
            logger.error("APNs: %s", error)
            for index in range(len(messages)):
                yield index, PermanentError(str(error), code=error.code)
            return
        requests = {}
        for index, message in enumerate(messages):
            try:
                requests[index] = self._request_for(message)
            except ProviderError as error:
                yield index, error
        if not requests:
            return
        loop = EventLoopThread.for_this_process()
        # The loop enforces `timeout` per request; this outer bound only guards against a wedged loop.
        bound = self.timeout * 2 + 10
        no_answer = TransientError("APNs: no answer from the event loop", code="timeout")
        try:
            problem = loop.run(self._set_up_client(), bound)
        except TimeoutError:
            problem = no_answer
        if problem is not None:
            for index in requests:
                yield index, problem
            return
        indexes = list(requests)
        answered = set()

        def start(position):
            index = indexes[position]
            return loop.submit(self._send_one(messages[index], requests[index]))

        try:
            for position, future in completed_in_window(start, len(indexes), self.batch_concurrency, timeout=bound):
                answered.add(position)
                yield indexes[position], future.result()
        except TimeoutError:
            for position, index in enumerate(indexes):
                if position not in answered:
                    yield index, no_answer

    def check(self) -> list[str]:
        problems = []
        for name in ("key_id", "team_id", "topic"):
            if not getattr(self, name):
                problems.append(f"APNs: {name} is missing")
        try:
            self._usable_key()
        except PermanentError as error:
            problems.append(error.args[0])
        if self.ca_file and not os.access(self.ca_file, os.R_OK):
            problems.append(f"APNs: cannot read ca_file {self.ca_file}")
        return problems

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_pid == os.getpid():
            async def close_pool():
                client.pool.close()

            try:
                EventLoopThread.for_this_process().run(close_pool(), 5)
            except Exception:  # closing at shutdown must not raise
                logger.exception("APNs: error while closing connections")

    # --- building the request ---------------------------------------------------------------------------

    def _request_for(self, message: Message) -> NotificationRequest:
        """The aioapns request for `message`; raises PermanentError when it cannot be sent at all."""
        payload = self.payload_for(message)
        size = len(json.dumps(payload, ensure_ascii=False).encode())  # encoded as aioapns encodes it
        if size > MAX_PAYLOAD_BYTES:
            raise PermanentError(
                f"APNs payload is {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit",
                code="PayloadTooLarge",
            )
        time_to_live = None
        if message.expires_at is not None:
            expires_at = message.expires_at
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=timezone.utc)
            seconds = (expires_at - datetime.now(timezone.utc)).total_seconds()
            if seconds <= 0:
                raise PermanentError(f"message expired at {expires_at.isoformat()}", code="Expired")
            time_to_live = math.ceil(seconds)  # aioapns sends apns-expiration = now + time_to_live
        return NotificationRequest(
            device_token=message.to,
            message=payload,
            # A fresh apns-id per request: aioapns matches answers by it, and one notification may go
            # to many devices of a user concurrently. The notification id travels in the payload.
            notification_id=str(uuid.uuid4()),
            time_to_live=time_to_live,
            priority=PRIORITY_IMMEDIATE if message.priority == "high" else PRIORITY_CONSIDERATE,
            collapse_key=message.collapse_key or None,
            push_type=PushType.ALERT,
        )

    @staticmethod
    def payload_for(message: Message) -> dict:
        """The JSON payload: Apple's `aps` dictionary plus our custom keys at the top level.

        `aps.category` is the notification type (`type_key`), which the app registers as a
        UNNotificationCategory to attach actions. The keys `aps` and `notification_id` are ours; a
        message.data key of the same name is overridden.
        """
        alert = {}
        if message.title:
            alert["title"] = message.title
        if message.body:
            alert["body"] = message.body
        aps: dict = {"alert": alert, "mutable-content": 1}
        if message.badge is not None:
            aps["badge"] = message.badge
        if message.sound:
            aps["sound"] = message.sound
        if message.type_key:
            aps["category"] = message.type_key
        payload = dict(message.data)
        if message.action_url:
            payload.setdefault("action_url", message.action_url)
        payload["notification_id"] = str(message.notification_id)
        payload["aps"] = aps
        return payload

    # --- talking to APNs (runs in the event loop thread) ----------------------------------------------

    async def _set_up_client(self) -> ProviderError | None:
        # The client is built here, outside _send_one's connection-error handling: an unreadable ca_file
        # or a key aioapns refuses is a configuration error, not a network one.
        try:
            self._client_for_this_loop()
        except Exception as error:
            logger.error("APNs: cannot set up the client: %r", error)
            return PermanentError(f"APNs: cannot set up the client: {type(error).__name__}: {error}", code="config")
        return None

    async def _send_one(self, message: Message, request: NotificationRequest) -> SendResult | ProviderError:
        try:
            result = await self._post(request)
            if result.description == "ExpiredProviderToken":
                # Our JWT was refused as too old (clock skew, or a process suspended for long):
                # make a new one and try once more.
                self._force_jwt_refresh()
                request.notification_id = str(uuid.uuid4())
                result = await self._post(request)
                if result.description == "ExpiredProviderToken":
                    return TransientError(
                        "APNs refused a freshly made provider token", code="ExpiredProviderToken"
                    )
        except asyncio.TimeoutError:
            logger.warning("APNs: timeout sending to device %s (delivery %s)", _short(message.to), message.delivery_id)
            return TransientError(f"no answer from APNs within {self.timeout}s", code="timeout")
        except (MaxAttemptsExceeded, APNsConnectionError, OSError, ssl.SSLError) as error:
            logger.warning("APNs: cannot connect for device %s (delivery %s): %r", _short(message.to), message.delivery_id, error)
            return TransientError(f"cannot reach APNs: {type(error).__name__} {error}", code="connection")
        except Exception as error:  # an aioapns bug: retry rather than lose it (credentials are checked before)
            logger.exception("APNs: unexpected error for device %s (delivery %s)", _short(message.to), message.delivery_id)
            return TransientError(f"{type(error).__name__}: {error}", code="unexpected")
        return self._outcome_of(message, result)

    async def _post(self, request: NotificationRequest):
        client = self._client_for_this_loop()
        return await asyncio.wait_for(client.send_notification(request), self.timeout)

    def _outcome_of(self, message: Message, result) -> SendResult | ProviderError:
        """Map Apple's answer to our result or error kinds.
        https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
        """
        status, reason = str(result.status), result.description or ""
        if result.is_successful:
            logger.log(sent_log_level(message), "APNs: sent to device %s (delivery %s, apns-id %s)", _short(message.to),
                       message.delivery_id, result.notification_id)
            return SendResult(provider_message_id=result.notification_id)

        logger.warning("APNs: %s %s for device %s (delivery %s)", status, reason, _short(message.to), message.delivery_id)
        text = f"APNs answered {status} {reason}".strip()
        if status == "410" or reason in TARGET_GONE_REASONS:
            return PermanentError(text, code=reason or status, target_gone=True)
        if status == "429":
            # TooManyRequests: too many pushes to this one device. Apple sends no Retry-After.
            return RateLimited(text, code=reason or status)
        if status.startswith("5") or not status.isdigit():
            return TransientError(text, code=reason or status)
        # 400 (payload, topic, headers), 403 (InvalidProviderToken, MissingProviderToken: our
        # credentials), 404, 405, 413: the same request would fail the same way.
        return PermanentError(text, code=reason or status)

    def _client_for_this_loop(self) -> APNs:
        # Created lazily inside the loop thread: aioapns binds its pool to the running loop.
        if self._client is None or self._client_pid != os.getpid():
            self._client = self._make_client()
            self._client_pid = os.getpid()
        return self._client

    def _make_client(self) -> APNs:
        try:
            ssl_context = ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cannot load ca_file {self.ca_file}: {error}") from error
        ssl_context.set_alpn_protocols(["h2"])
        client = APNs(
            key=self._key_text(),
            key_id=self.key_id,
            team_id=self.team_id,
            topic=self.topic,
            use_sandbox=self.use_sandbox,
            ssl_context=ssl_context,
            max_connections=self.max_connections,
            max_connection_attempts=self.max_connection_attempts,
            err_func=_ignore_error,  # we log failures ourselves, with the delivery id
        )
        if self.host or self.port:
            # aioapns reads host and port from class attributes of its protocol class.
            base = APNsDevelopmentClientProtocol if self.use_sandbox else APNsProductionClientProtocol
            client.pool.protocol_class = type(
                "APNsCustomEndpointProtocol",
                (base,),
                {"APNS_SERVER": self.host or base.APNS_SERVER, "APNS_PORT": self.port or base.APNS_PORT},
            )
        return client

    def _force_jwt_refresh(self) -> None:
        """Give every open connection a new provider token (aioapns otherwise renews it every 30 min)."""
        now = time.monotonic()
        if now - self._last_forced_refresh < MIN_SECONDS_BETWEEN_FORCED_REFRESHES:
            return  # a concurrent request already refreshed it
        self._last_forced_refresh = now
        auth_provider = JWTAuthorizationHeaderProvider(key=self._key_text(), key_id=self.key_id, team_id=self.team_id)
        for connection in self._client.pool.connections:
            connection.auth_provider = auth_provider
        logger.info("APNs: provider token refreshed after ExpiredProviderToken")

    def _check_credentials(self) -> None:
        """Raise PermanentError(code="config") unless key, key_id, team_id and topic make a usable token.
        Checked once per provider instance (the settings do not change under a running process)."""
        if self._credentials_checked:
            return
        missing = [name for name in ("key_id", "team_id", "topic") if not getattr(self, name)]
        if missing:
            raise PermanentError(f"APNs: {', '.join(missing)} missing from the configuration", code="config")
        self._usable_key()
        self._credentials_checked = True

    def _usable_key(self) -> str:
        """The .p8 key text, after signing a provider token with it; PermanentError(code="config") when
        the key is missing, unreadable or not an ES256 (P-256) private key."""
        try:
            key = self._key_text()
        except OSError as error:
            raise PermanentError(f"APNs: cannot read key_file {self.key_file}: {error}", code="config") from error
        if not key:
            raise PermanentError("APNs: key (the .p8 text) or key_file is missing", code="config")
        if "PRIVATE KEY" not in key:
            raise PermanentError("APNs: key does not look like a .p8 private key (PEM)", code="config")
        try:
            # Sign a provider token exactly as aioapns will on each connection.
            JWTAuthorizationHeaderProvider(key=key, key_id=self.key_id, team_id=self.team_id).get_header()
        except Exception as error:  # PyJWT and cryptography raise various types for a bad key
            raise PermanentError(
                f"APNs: key is not a usable .p8 (ES256) private key: {type(error).__name__}: {error}",
                code="config",
            ) from error
        return key

    def _key_text(self) -> str:
        if self.key:
            return self.key
        if self.key_file:
            with open(self.key_file) as f:
                self.key = f.read()
        return self.key


async def _ignore_error(request, result) -> None:
    return None


def _short(token: str) -> str:
    """Enough of a device token to find it in the database, without filling logs with secrets."""
    return token[:8] + "…" if len(token) > 8 else token


def build(config: dict) -> APNsProvider:
    """An APNsProvider from a config dict (keys in the module docstring)."""
    return APNsProvider(
        key=config.get("key", ""),
        key_file=config.get("key_file", ""),
        key_id=config.get("key_id", ""),
        team_id=config.get("team_id", ""),
        topic=config.get("topic", ""),
        use_sandbox=bool(config.get("use_sandbox", False)),
        host=config.get("host", ""),
        port=int(config.get("port") or 0),
        ca_file=config.get("ca_file", ""),
        max_connections=int(config.get("max_connections", 10)),
        timeout=float(config.get("timeout", 10.0)),
        max_connection_attempts=int(config.get("max_connection_attempts", 3)),
    )
