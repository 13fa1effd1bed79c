"""Firebase Cloud Messaging (FCM) adapter, over firebase-admin's HTTP v1 client.

`build(config)` takes:

    credentials_file  path to the service account key JSON
    credentials       or the service account JSON itself (a dict, or a JSON string from the environment)
    project_id        the Firebase project; default: the service account's project_id
    endpoint          another FCM base URL replacing https://fcm.googleapis.com (a proxy or a test
                      server). The OAuth token URL is the service account's own `token_uri`.
    timeout           seconds per HTTP request, default 10
    retries           extra attempts firebase-admin makes itself on 500/503, default 1 (our task retries
                      with backoff anyway; firebase-admin's default of 4 would hold a worker for ~8 s)
    concurrency       messages in flight at once per worker process, default 100 (one connection each)
    target            "token" (default): Message.to is an FCM registration token (getToken()), sent in
                      the v1 `token` field; "fid": Message.to is a Firebase installation ID, sent in `fid`

Sending calls `messaging.send` for each message of a chunk of `concurrency` on a pool of as many
threads kept for the life of the process, over one requests session per process whose connection pool
we size to the chunk (firebase-admin sizes it only for Google's own host, so any `endpoint` would open
and drop a connection per message). `messaging.send_each` does the same with a new pool of threads per
call: 100 threads started and joined per 100 messages, 6 % of a campaign worker's time in py-spy. We
measured `send_each_async` (httpx) at 3.3–3.5 ms of CPU per message and send_each at 1.0–1.2 ms, on
the same fake FCM (BENCHMARKS.md): on 2 cores the client's CPU is the push fan-out's limit.
"""
from __future__ import annotations

import email.utils
import itertools
import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import requests
from firebase_admin import credentials, exceptions, messaging
from urllib3.util.retry import Retry

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    SendResult,
    TransientError,
    sent_log_level,
    session_read_environment_once,
)

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_CALL = 500  # FCM's own batch limit (send_each raises ValueError above it): a chunk at most
GOOGLE_FCM_BASE_URL = "https://fcm.googleapis.com"
_app_numbers = itertools.count(1)


class FCMProvider(Provider):
    """Sends push notifications to Android, web and (when APNs is not configured) iOS through FCM."""

    name = "fcm"
    channel = "push"

    def __init__(
        self,
        *,
        credentials_info: dict | str | None = None,
        credentials_file: str = "",
        project_id: str = "",
        endpoint: str = "",
        timeout: float = 10.0,
        retries: int = 1,
        target: str = "token",
        concurrency: int = 100,
    ):
        self.credentials_info = credentials_info
        self.credentials_file = credentials_file
        self.project_id = project_id
        self.endpoint = endpoint.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.target = target
        self.concurrency = max(1, min(int(concurrency), MAX_MESSAGES_PER_CALL))
        self._app: firebase_admin.App | None = None
        self._app_pid = 0
        self._app_lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None  # made with the App, once per process

    # --- the contract -----------------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        """Send one message. Returns SendResult(provider_message_id="projects/<id>/messages/<n>") or
        raises PermanentError / TransientError / RateLimited."""
        outcome = self.send_batch([message])[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    @property
    def group_size(self) -> int:
        return self.concurrency

    def send_as_completed(self, messages: list[Message]):
        """Send all messages, `concurrency` at a time, yielding each chunk's outcomes when it completes."""
        ready: list[tuple[int, messaging.Message]] = []
        refused: dict[int, ProviderError] = {}
        for index, message in enumerate(messages):
            try:
                ready.append((index, self.fcm_message_for(message)))
            except ProviderError as error:
                refused[index] = error
        yield from refused.items()
        if not ready:
            return

        try:
            app = self._app_for_this_process()
        except (ValueError, OSError) as error:
            problem = PermanentError(f"FCM is misconfigured: {error}", code="configuration")
            for index, _ in ready:
                yield index, problem
            return

        for start in range(0, len(ready), self.concurrency):
            chunk = ready[start:start + self.concurrency]
            results = self._send_chunk(app, [fcm_message for _, fcm_message in chunk])
            for (index, _), result in zip(chunk, results):
                yield index, self._log(messages[index], result)

    def check(self) -> list[str]:
        problems = []
        try:
            info = self._credentials_info()
        except (OSError, ValueError) as error:
            return [f"FCM: cannot read credentials: {error}"]
        if info is None:
            return ["FCM: credentials_file or credentials (the service account JSON) is missing"]
        if info.get("type") != "service_account":
            problems.append('FCM: credentials are not a service account key (type != "service_account")')
        for key in ("private_key", "client_email", "token_uri"):
            if not info.get(key):
                problems.append(f"FCM: credentials have no {key}")
        if not (self.project_id or info.get("project_id")):
            problems.append("FCM: project_id is missing (neither in config nor in the credentials)")
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            problems.append(f"FCM: endpoint {self.endpoint!r} is not an http(s) URL")
        if self.target not in ("token", "fid"):
            problems.append(f'FCM: target must be "token" or "fid", not {self.target!r}')
        return problems

    def close(self) -> None:
        with self._app_lock:
            app, self._app = self._app, None
            threads, self._threads = self._threads, None
        if app is None or self._app_pid != os.getpid():
            return
        threads.shutdown(wait=False)
        try:
            messaging._get_messaging_service(app)._client.close()
            firebase_admin.delete_app(app)
        except Exception:  # closing at shutdown must not raise
            logger.exception("FCM: error while closing the client")

    # --- building the message ---------------------------------------------------------------------------

    def fcm_message_for(self, message: Message) -> messaging.Message:
        """The firebase-admin Message for `message`; raises PermanentError when it cannot be sent.

        Notification (title/body) plus data (values turned into strings: FCM takes only strings, so
        non-strings are JSON-encoded), Android priority and TTL always (ignored for other targets), an
        APNs block for platform "ios" and a webpush block for "web".
        """
        ttl = _seconds_until(message.expires_at)
        high = message.priority == "high"
        data = {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in message.data.items()}
        if message.action_url:
            data.setdefault("action_url", message.action_url)
        data["notification_id"] = str(message.notification_id)

        android_notification = None
        if message.sound or message.badge is not None:
            # Android has no app-wide badge number; notification_count is the count a launcher may show.
            android_notification = messaging.AndroidNotification(
                sound=message.sound or None, notification_count=message.badge,
            )
        android = messaging.AndroidConfig(
            priority="high" if high else "normal",
            ttl=ttl,
            collapse_key=message.collapse_key or None,
            notification=android_notification,
        )
        apns = None
        if message.platform == "ios":
            # https://firebase.google.com/docs/cloud-messaging/concept-options#apns-priority
            headers = {"apns-priority": "10" if high else "5", "apns-push-type": "alert"}
            if ttl is not None:
                headers["apns-expiration"] = str(int(time.time()) + ttl)
            if message.collapse_key:
                headers["apns-collapse-id"] = message.collapse_key
            apns = messaging.APNSConfig(
                headers=headers,
                payload=messaging.APNSPayload(aps=messaging.Aps(
                    badge=message.badge,
                    sound=message.sound or None,
                    category=message.type_key or None,
                    mutable_content=True,
                )),
            )
        webpush = None
        if message.platform == "web":
            headers = {"Urgency": "high" if high else "normal"}
            if ttl is not None:
                headers["TTL"] = str(ttl)
            link = message.action_url if message.action_url.startswith("https://") else None
            webpush = messaging.WebpushConfig(
                headers=headers,
                notification=messaging.WebpushNotification(title=message.title or None, body=message.body or None),
                fcm_options=messaging.WebpushFCMOptions(link=link) if link else None,
            )

        notification = None
        if message.title or message.body:
            notification = messaging.Notification(title=message.title or None, body=message.body or None)
        fcm_message = messaging.Message(
            data=data, notification=notification, android=android, apns=apns, webpush=webpush
        )
        # Set after construction: firebase-admin 7.7 warns in Message.__init__ when `token=` is passed,
        # but registration tokens from getToken() still belong in the v1 `token` field, and a `fid` is a
        # different identifier (an installation ID), so we do not silently move tokens into it.
        setattr(fcm_message, self.target, message.to)
        try:
            str(fcm_message)  # encodes and validates, so one bad message cannot fail its whole chunk
        except ValueError as error:
            raise PermanentError(f"FCM message is invalid: {error}", code="invalid_message") from error
        return fcm_message

    # --- talking to FCM -----------------------------------------------------------------------------------

    def _send_chunk(self, app, fcm_messages: list) -> list[SendResult | ProviderError]:
        try:
            # Each sending thread would fetch its own access token when the cached one has expired.
            credential = app.credential.get_credential()
            if not credential.valid:
                credential.refresh(google.auth.transport.requests.Request())
        except Exception as error:  # typically the access token could not be fetched
            return [_error_for_failed_call(error)] * len(fcm_messages)
        sends = [self._threads.submit(messaging.send, fcm_message, app=app) for fcm_message in fcm_messages]
        return [_outcome_of(send) for send in sends]

    def _log(self, message: Message, outcome: SendResult | ProviderError):
        if isinstance(outcome, SendResult):
            logger.log(sent_log_level(message), "FCM: sent to device %s (delivery %s, %s)", _short(message.to),
                       message.delivery_id, outcome.provider_message_id)
        else:
            logger.warning("FCM: %s for device %s (delivery %s)", outcome, _short(message.to), message.delivery_id)
        return outcome

    # --- the firebase_admin App --------------------------------------------------------------------------

    def _app_for_this_process(self) -> firebase_admin.App:
        """This adapter's own named App (so several adapters can coexist), made once per process."""
        with self._app_lock:
            if self._app is None or self._app_pid != os.getpid():
                self._app = self._make_app()
                self._app_pid = os.getpid()
                self._threads = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fcm-send")
            return self._app

    def _make_app(self) -> firebase_admin.App:
        info = self._credentials_info()
        if info is None:
            raise ValueError("no service account credentials configured")
        project_id = self.project_id or info.get("project_id", "")
        app = firebase_admin.initialize_app(
            credentials.Certificate(info),
            {"projectId": project_id, "httpTimeout": self.timeout},
            name=f"notifier-fcm-{os.getpid()}-{next(_app_numbers)}",
        )
        service = messaging._get_messaging_service(app)
        # firebase-admin has no public setting for these. The send URL is fixed in the service
        # (`_fcm_url`), and its session retries 500/503 four times with backoff through a connection pool
        # mounted for Google's host only. Both are private attributes, pinned by our firebase-admin version
        # and covered by tests/providers/test_fcm.py.
        base_url = self.endpoint or GOOGLE_FCM_BASE_URL
        service._fcm_url = service._fcm_url.replace(GOOGLE_FCM_BASE_URL, base_url, 1)
        # read=False: a request that timed out may have reached FCM, and sending it again could notify
        # twice; the timeout is raised as such (DEADLINE_EXCEEDED, transient).
        # respect_retry_after_header=False: urllib3 would otherwise sleep out a 429's Retry-After inside the
        # worker; we answer RateLimited and the row waits in the database instead.
        retries = Retry(connect=1, read=False, status=self.retries, status_forcelist=[500, 503], raise_on_status=False,
                        backoff_factor=0.5, allowed_methods=None, respect_retry_after_header=False)
        service._client.session.mount(base_url, requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=self.concurrency, max_retries=retries))
        session_read_environment_once(service._client.session, base_url)
        return app

    def _credentials_info(self) -> dict | None:
        if isinstance(self.credentials_info, str):
            return json.loads(self.credentials_info)
        if self.credentials_info:
            return self.credentials_info
        if self.credentials_file:
            with open(self.credentials_file) as f:
                return json.load(f)
        return None


def error_for(error: Exception) -> ProviderError:
    """Map one firebase-admin send error to our error kinds.
    https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
    """
    text = f"FCM: {error}"
    response = getattr(error, "http_response", None)
    if isinstance(error, messaging.UnregisteredError):
        # The app was uninstalled or the token expired: never send to it again.
        return PermanentError(text, code="UNREGISTERED", target_gone=True)
    if isinstance(error, messaging.SenderIdMismatchError):
        # The token belongs to another Firebase project's sender: it will never work for us.
        return PermanentError(text, code="SENDER_ID_MISMATCH", target_gone=True)
    if isinstance(error, messaging.ThirdPartyAuthError):
        # Our APNs key or web push credentials in the Firebase console are wrong.
        return PermanentError(text, code="THIRD_PARTY_AUTH_ERROR")
    if isinstance(error, exceptions.ResourceExhaustedError):  # QuotaExceededError included
        return RateLimited(text, code="QUOTA_EXCEEDED", retry_after=_retry_after(response))
    if isinstance(error, exceptions.InvalidArgumentError):
        return PermanentError(text, code="INVALID_ARGUMENT", target_gone=_is_about_the_token(error, response))
    if isinstance(error, (exceptions.UnavailableError, exceptions.InternalError,
                          exceptions.DeadlineExceededError, exceptions.UnknownError)):
        return TransientError(text, code=getattr(error, "code", "") or "UNAVAILABLE")
    if response is not None and response.status_code >= 500:
        return TransientError(text, code=getattr(error, "code", "") or str(response.status_code))
    if isinstance(error, (exceptions.UnauthenticatedError, exceptions.PermissionDeniedError,
                          exceptions.NotFoundError)):
        # Our service account or project id is wrong: the same request would fail the same way.
        return PermanentError(text, code=getattr(error, "code", "") or "PERMISSION_DENIED")
    return TransientError(f"FCM: {type(error).__name__}: {error}", code=getattr(error, "code", "") or "unexpected")


def _outcome_of(send) -> SendResult | ProviderError:
    """What one `messaging.send` call ended with: its message name, or our kind of its error."""
    try:
        return SendResult(provider_message_id=send.result())
    except exceptions.FirebaseError as error:  # FCM's answer (firebase-admin maps HTTP errors to these)
        return error_for(error)
    except Exception as error:  # no answer: the access token, or something unexpected
        return _error_for_failed_call(error)


def _error_for_failed_call(error: Exception) -> ProviderError:
    """Map an exception that came without an answer from FCM (fetching the access token, mostly)."""
    cause = getattr(error, "cause", None) or error.__cause__ or error
    if isinstance(cause, google.auth.exceptions.RefreshError) and not getattr(cause, "retryable", False):
        # The token endpoint refused our service account (invalid_grant: key deleted, wrong account).
        return PermanentError(f"FCM: cannot get an access token: {cause}", code="auth")
    if isinstance(cause, google.auth.exceptions.GoogleAuthError):
        return TransientError(f"FCM: cannot get an access token: {cause}", code="auth")
    return TransientError(f"FCM: {type(cause).__name__}: {cause}", code="unexpected")


def _is_about_the_token(error: Exception, response) -> bool:
    """Whether an INVALID_ARGUMENT answer is about the target token rather than the message.

    FCM answers "The registration token is not a valid FCM registration token" and, in
    google.rpc.BadRequest details, names the field `message.token`.
    """
    if "registration token" in str(error).lower():
        return True
    try:
        details = response.json()["error"].get("details", [])
    except Exception:
        return False
    for detail in details:
        for violation in detail.get("fieldViolations", []) if isinstance(detail, dict) else []:
            if violation.get("field") in ("message.token", "message.fid"):
                return True
    return False


def _retry_after(response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _seconds_until(expires_at: datetime | None) -> int | None:
    """Whole seconds left before `expires_at` (naive means UTC); PermanentError when already past."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=timezone.utc)
    seconds = (expires_at - datetime.now(timezone.utc)).total_seconds()
    if seconds <= 0:
        raise PermanentError(f"message expired at {expires_at.isoformat()}", code="Expired")
    return math.ceil(seconds)


def _short(token: str) -> str:
    """Enough of a device token to find it in the database, without filling logs with secrets."""
    return token[:8] + "…" if len(token) > 8 else token


def build(config: dict) -> FCMProvider:
    """An FCMProvider from a config dict (keys in the module docstring)."""
    return FCMProvider(
        credentials_info=config.get("credentials") or None,
        credentials_file=config.get("credentials_file", ""),
        project_id=config.get("project_id", ""),
        endpoint=config.get("endpoint", ""),
        timeout=float(config.get("timeout", 10.0)),
        retries=int(config.get("retries", 1)),
        target=config.get("target", "token"),
        concurrency=int(config.get("concurrency", 100)),
    )
