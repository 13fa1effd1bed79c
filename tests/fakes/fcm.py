"""A fake FCM HTTP v1 API and Google OAuth token endpoint, on 127.0.0.1 over plain HTTP/1.1.

firebase-admin's async client (httpx with http2=True) speaks HTTP/1.1 to an http:// URL, so no TLS is
needed. The server is a small asyncio HTTP/1.1 server with keep-alive in one thread (a thread per
connection would fight the client under test for the GIL). It serves:

    POST /token                                  the service account's token_uri: verifies the RS256
                                                 JWT-bearer assertion, answers {"access_token", ...}
    POST /v1/projects/<id>/messages:send         checks the bearer access token and the message, answers
                                                 {"name": "projects/<id>/messages/<n>"} or Google's error
                                                 body (the shape firebase-admin parses: error.status and
                                                 details[FcmError].errorCode)

Error bodies follow https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode.

Use in tests:

    with FakeFCM() as fake:                         # a fresh RSA service account each time
        provider = fcm.build(fake.adapter_config())
        fake.set_outcome(token, "UNREGISTERED")     # any key of ERRORS; None means success
        fake.set_outcome(token, "QUOTA_EXCEEDED", retry_after=30)
        fake.set_default_outcome("UNAVAILABLE")
        fake.fail_next(2, "INTERNAL")
        fake.revoke_access_tokens()                 # issued access tokens now get 401
        fake.requests                               # sends: [ReceivedRequest(method, path, headers, body, ...)]
        fake.token_requests                         # OAuth token requests, same shape
        fake.connections_opened
        fake.reset()

Standalone, for benchmarks (writes the service account JSON into --dir and prints the config as JSON):

    python -m tests.fakes.fcm --port 8444 --latency 0.01
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SEND_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth signs service account assertions for Google's token endpoint, whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@dataclass(frozen=True)
class FCMError:
    http_status: int
    status: str  # google.rpc status name
    message: str
    error_code: str = ""  # FcmError.errorCode, when FCM gives one
    field_violation: str = ""  # google.rpc.BadRequest field, when FCM names one


# What FCM answers for each error, keyed by the name tests use.
ERRORS = {
    "UNREGISTERED": FCMError(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    "INVALID_TOKEN": FCMError(
        400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
        "INVALID_ARGUMENT", "message.token",
    ),
    "INVALID_ARGUMENT": FCMError(
        400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "INVALID_ARGUMENT",
    ),
    "SENDER_ID_MISMATCH": FCMError(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
    "QUOTA_EXCEEDED": FCMError(
        429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Messages sent'.", "QUOTA_EXCEEDED",
    ),
    "UNAVAILABLE": FCMError(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
    "INTERNAL": FCMError(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": FCMError(
        401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR",
    ),
    # A bare 429 from Google's front end, before FCM itself: an HTML page, no JSON error (no `status`).
    "HTTP_429": FCMError(429, "", "<html><title>Error 429 (Too Many Requests)!!1</title></html>"),
}
UNAUTHENTICATED = FCMError(
    401, "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential.",
)
PERMISSION_DENIED = FCMError(
    403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource.",
)


def error_body(error: FCMError) -> dict:
    details = []
    if error.error_code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error.error_code})
    if error.field_violation:
        details.append({
            "@type": BAD_REQUEST_TYPE,
            "fieldViolations": [{"field": error.field_violation, "description": error.message}],
        })
    body = {"code": error.http_status, "message": error.message, "status": error.status}
    if details:
        body["details"] = details
    return {"error": body}


def make_service_account(project_id: str, token_uri: str) -> dict:
    """A throwaway service account key file's content, with a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": f"notifier@{project_id}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


@dataclass(frozen=True)
class Outcome:
    error: str | None = None  # a key of ERRORS, or None for success
    retry_after: int | None = None


@dataclass
class ReceivedRequest:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    headers: dict  # lower-case name -> value
    body: dict | None  # parsed JSON (sends) or form fields (token requests)
    connection: int
    status: int = 0
    response: dict = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)  # wall clock, for benchmarks
    raw: bytes = b""  # the body as it came (the bench finds its references in it without re-encoding)

    @property
    def message(self) -> dict:
        return (self.body or {}).get("message", {})

    @property
    def target(self) -> str:
        return self.message.get("token") or self.message.get("fid") or ""


class FakeFCM:
    """FCM and its OAuth token endpoint in a background thread. See the module docstring."""

    def __init__(
        self,
        *,
        project_id: str = "notifier-test",
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token_lifetime: int = 3600,
    ):
        self.project_id = project_id
        self.latency = latency
        self.host = host
        self.port = port
        self.access_token_lifetime = access_token_lifetime
        self.service_account: dict = {}
        self.credentials_file = ""
        self._public_key = None
        self._directory = ""

        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._token_requests: list[ReceivedRequest] = []
        self._outcomes: dict[str, Outcome] = {}
        self._default = Outcome()
        self._forced: list[Outcome] = []
        self._access_tokens: set[str] = set()
        self._connections_opened = 0
        self._message_numbers = itertools.count(1)
        self._writers: set[asyncio.StreamWriter] = set()
        self._token_numbers = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self, directory: str | None = None) -> FakeFCM:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-fcm", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve_connection, self.host, self.port, backlog=512), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self.service_account = make_service_account(self.project_id, self.token_uri)
        private_key = serialization.load_pem_private_key(self.service_account["private_key"].encode(), None)
        self._public_key = private_key.public_key()
        self._own_directory = directory is None
        self._directory = directory or tempfile.mkdtemp(prefix="fake-fcm-")
        os.makedirs(self._directory, exist_ok=True)
        self.credentials_file = os.path.join(self._directory, "service-account.json")
        with open(self.credentials_file, "w") as f:
            json.dump(self.service_account, f)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Connections still waiting for a next request on keep-alive: end them, so none is destroyed pending.
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
        if self._own_directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> FakeFCM:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def adapter_config(self, **overrides) -> dict:
        """A config for notifier.providers.fcm.build() that points at this fake."""
        config = {
            "credentials": dict(self.service_account),
            "project_id": self.project_id,
            "endpoint": self.url,
            "timeout": 5,
            "retries": 0,
        }
        config.update(overrides)
        return config

    # --- programming answers ---------------------------------------------------------------------------

    def set_outcome(self, target: str, error: str | None = None, retry_after: int | None = None) -> None:
        """Answer sends to `target` (token or fid) with the named error of ERRORS, or success (None)."""
        if error is not None and error not in ERRORS:
            raise ValueError(f"unknown FCM error {error!r}; known: {sorted(ERRORS)}")
        with self._lock:
            self._outcomes[target] = Outcome(error, retry_after)

    def set_default_outcome(self, error: str | None = None, retry_after: int | None = None) -> None:
        with self._lock:
            self._default = Outcome(error, retry_after)

    def fail_next(self, count: int, error: str, retry_after: int | None = None) -> None:
        """Answer the next `count` valid sends (any target) with the named error."""
        with self._lock:
            self._forced.extend([Outcome(error, retry_after)] * count)

    def revoke_access_tokens(self) -> None:
        """Access tokens issued so far stop working (401 UNAUTHENTICATED)."""
        with self._lock:
            self._access_tokens.clear()

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._token_requests.clear()
            self._outcomes.clear()
            self._default = Outcome()
            self._forced.clear()
            self._connections_opened = 0

    # --- reading what happened --------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._token_requests)

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._connections_opened

    # --- the server side (runs in the fake's event loop thread) -----------------------------------------

    def _connection_made(self) -> int:
        with self._lock:
            self._connections_opened += 1
            return self._connections_opened

    def _answer_token_request(self, request: ReceivedRequest) -> tuple[int, dict]:
        """Google's OAuth 2.0 token endpoint for service accounts (RFC 7523 JWT bearer grant)."""
        form = request.body or {}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""), self._public_key, algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                options={"require": ["iss", "aud", "iat", "exp"]}, leeway=60,
            )
        except jwt.PyJWTError as error:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {error}"}
        if claims["iss"] != self.service_account["client_email"] or not claims.get("scope"):
            return 400, {"error": "invalid_grant", "error_description": "Invalid issuer or scope"}
        access_token = f"ya29.fake-{next(self._token_numbers)}-{int(time.time())}"
        with self._lock:
            self._access_tokens.add(access_token)
        return 200, {"access_token": access_token, "expires_in": self.access_token_lifetime, "token_type": "Bearer"}

    def _answer_send(self, request: ReceivedRequest) -> tuple[int, dict, dict]:
        """Status, JSON body and extra headers for one messages:send request."""
        authorization = request.headers.get("authorization", "")
        with self._lock:
            known = authorization.startswith("Bearer ") and authorization[7:] in self._access_tokens
        if not known:
            return UNAUTHENTICATED.http_status, error_body(UNAUTHENTICATED), {}
        match = SEND_PATH.match(request.path)
        if match.group(1) != self.project_id:
            return PERMISSION_DENIED.http_status, error_body(PERMISSION_DENIED), {}

        problem = _message_problem(request.body)
        if problem:
            error = FCMError(400, "INVALID_ARGUMENT", problem[1], "INVALID_ARGUMENT", problem[0])
            return 400, error_body(error), {}

        with self._lock:
            if self._forced:
                outcome = self._forced.pop(0)
            else:
                outcome = self._outcomes.get(request.target, self._default)
        if outcome.error is None:
            name = f"projects/{self.project_id}/messages/{next(self._message_numbers)}"
            return 200, {"name": name}, {}
        error = ERRORS[outcome.error]
        headers = {"Retry-After": str(outcome.retry_after)} if outcome.retry_after is not None else {}
        if not error.status:  # not from FCM: the page as it is
            return error.http_status, error.message, headers
        return error.http_status, error_body(error), headers

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive: read requests until the client closes the connection."""
        connection = self._connection_made()
        self._writers.add(writer)
        try:
            while True:
                # The request line and headers in one read (a read per line cost the fake a fifth of its time).
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as error:
                    if error.partial.strip():
                        raise
                    return  # the client closed the connection between requests
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                status, body, extra = await self._handle(method, target, headers, raw, connection)
                plain = isinstance(body, str)
                data = body.encode() if plain else json.dumps(body).encode()
                content_type = "text/html; charset=UTF-8" if plain else "application/json; charset=UTF-8"
                head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                        f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
                head += [f"{name}: {value}" for name, value in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(self, method, target, headers, raw, connection) -> tuple[int, dict | str, dict]:
        path = urllib.parse.urlsplit(target).path
        request = ReceivedRequest(method=method, path=path, headers=headers, body=None, connection=connection, raw=raw)
        if method != "POST":
            status, body, extra = 405, error_body(FCMError(405, "METHOD_NOT_ALLOWED", "Method not allowed.")), {}
        elif path == "/token":
            request.body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            self._record(request, token_request=True)
            status, body = self._answer_token_request(request)
            extra = {}
        elif SEND_PATH.match(path):
            try:
                request.body = json.loads(raw) if raw else None
            except ValueError:
                request.body = None
            self._record(request, token_request=False)  # on arrival, so a late answer is not missed
            if self.latency:
                await asyncio.sleep(self.latency)
            status, body, extra = self._answer_send(request)
        else:
            status, body, extra = 404, error_body(FCMError(404, "NOT_FOUND", "Not found.")), {}
        request.status, request.response = status, body
        return status, body, extra

    def _record(self, request: ReceivedRequest, token_request: bool) -> None:
        with self._lock:
            (self._token_requests if token_request else self._requests).append(request)


def _message_problem(body: dict | None) -> tuple[str, str] | None:
    """(field, description) of the first thing FCM would reject in the request body, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return "message", "Invalid JSON payload received. Required field 'message' missing."
    message = body["message"]
    targets = [name for name in ("token", "fid", "topic", "condition") if message.get(name)]
    if len(targets) != 1:
        return "message", "Exactly one of token, fid, topic or condition must be set."
    for index, (key, value) in enumerate((message.get("data") or {}).items()):
        if not isinstance(value, str):
            return f"message.data[{index}].value", f"Invalid value at 'message.data[{index}].value' (TYPE_STRING)"
    android = message.get("android") or {}
    if android.get("priority") not in (None, "high", "normal", "HIGH", "NORMAL"):
        return "message.android.priority", "Invalid value at 'message.android.priority'"
    if "ttl" in android and not re.match(r"^\d+(\.\d+)?s$", str(android["ttl"])):
        return "message.android.ttl", "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a fake FCM server until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--dir", default=None, help="where to write service-account.json (default: a temp dir)")
    parser.add_argument("--project-id", default="notifier-test")
    args = parser.parse_args()

    fake = FakeFCM(project_id=args.project_id, host=args.host, port=args.port, latency=args.latency)
    fake.start(directory=args.dir)
    config = fake.adapter_config()
    config.pop("credentials")
    config["credentials_file"] = fake.credentials_file
    print(json.dumps(config), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up the temp dir on kill too
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
