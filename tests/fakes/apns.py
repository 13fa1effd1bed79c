"""A fake APNs provider API: HTTP/2 over TLS on 127.0.0.1, speaking Apple's real protocol.

It checks what Apple checks for token-based connections (the ES256 bearer JWT with `kid` and `iss`, the
`apns-topic`, the `/3/device/<token>` path, the apns-* headers, the 4 KB payload limit) and answers like
Apple: 200 with an `apns-id` header, or a status with a JSON body `{"reason": "..."}` (410 adds
`"timestamp"`). Reference:
https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns

Use in tests:

    with FakeAPNs() as fake:                        # a fresh .p8 key, CA and certificate each time
        provider = apns.build(fake.adapter_config())
        fake.set_outcome(token, status=410, reason="Unregistered")
        fake.set_default_outcome(status=200)
        fake.fail_next(1, status=403, reason="ExpiredProviderToken")
        fake.expire_tokens()                        # every JWT seen so far now gets ExpiredProviderToken
        fake.requests                               # [ReceivedRequest(method, path, headers, body, ...)]
        fake.connections_opened                     # TLS connections accepted so far
        fake.reset()                                # forget outcomes, requests and counters

Standalone, for benchmarks (writes the key and CA into --dir and prints them as JSON):

    python -m tests.fakes.apns --port 8443 --latency 0.01
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes

from tests.fakes.tls import make_localhost_certificate, server_ssl_context

MAX_PAYLOAD_BYTES = 4096
JWT_MAX_AGE_SECONDS = 3600  # Apple rejects provider tokens older than one hour with ExpiredProviderToken
PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
              "liveactivity", "pushtotalk", "widgets", "controls"}
DEVICE_PATH = re.compile(r"^/3/device/([^/?]+)$")
DEVICE_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")


def make_apns_key() -> str:
    """A fresh EC P-256 private key in the PKCS#8 PEM form of an Apple .p8 file."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True)
class Outcome:
    status: int = 200
    reason: str = ""


@dataclass
class ReceivedRequest:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    headers: dict  # lower-case name -> value, pseudo-headers included
    body: dict | None  # parsed JSON, None when the body was not JSON
    raw_body: bytes
    device_token: str
    connection: int  # 1 for the first TLS connection accepted, 2 for the next, ...
    jwt_header: dict = field(default_factory=dict)
    jwt_claims: dict = field(default_factory=dict)
    status: int = 0
    reason: str = ""
    apns_id: str = ""
    received_at: float = field(default_factory=time.time)  # wall clock, for benchmarks


class FakeAPNs:
    """An APNs server in a background thread. See the module docstring for the programming API."""

    def __init__(
        self,
        *,
        team_id: str = "TEAM123456",
        key_id: str = "KEY1234567",
        topic: str = "com.example.notifier",
        key_pem: str | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        directory: str | None = None,
    ):
        self.team_id = team_id
        self.key_id = key_id
        self.topic = topic
        self.key_pem = key_pem or make_apns_key()
        self.public_key = serialization.load_pem_private_key(self.key_pem.encode(), None).public_key()
        self.latency = latency
        self.host = host
        self.port = port
        self.max_concurrent_streams = max_concurrent_streams
        self._directory = directory
        self._own_directory = directory is None
        self.ca_file = ""
        self.key_file = ""

        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._outcomes: dict[str, Outcome] = {}
        self._default = Outcome()
        self._forced: list[Outcome] = []
        self._expired_tokens: set[str] = set()
        self._seen_tokens: set[str] = set()
        self._connections_opened = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._protocols: set[_APNsServerProtocol] = set()

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FakeAPNs:
        if self._own_directory:
            self._directory = tempfile.mkdtemp(prefix="fake-apns-")
        os.makedirs(self._directory, exist_ok=True)
        certificate = make_localhost_certificate(self._directory)
        self.ca_file = certificate.ca_file
        self.key_file = os.path.join(self._directory, f"AuthKey_{self.key_id}.p8")
        with open(self.key_file, "w") as f:
            f.write(self.key_pem)
        ssl_context = server_ssl_context(certificate, alpn=["h2"])

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-apns", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(
                lambda: _APNsServerProtocol(self), self.host, self.port, ssl=ssl_context
            ),
            self._loop,
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for protocol in list(self._protocols):
                protocol.transport.close()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
        if self._own_directory and self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> FakeAPNs:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def adapter_config(self, **overrides) -> dict:
        """A config for notifier.providers.apns.build() that points at this fake."""
        config = {
            "key": self.key_pem,
            "key_id": self.key_id,
            "team_id": self.team_id,
            "topic": self.topic,
            "use_sandbox": True,
            "host": self.host,
            "port": self.port,
            "ca_file": self.ca_file,
        }
        config.update(overrides)
        return config

    # --- programming answers ---------------------------------------------------------------------------

    def set_outcome(self, device_token: str, status: int = 200, reason: str = "") -> None:
        """Answer every request for `device_token` with `status` and Apple `reason`."""
        with self._lock:
            self._outcomes[device_token] = Outcome(status, reason)

    def set_default_outcome(self, status: int = 200, reason: str = "") -> None:
        """Answer tokens without their own outcome with `status` and `reason`."""
        with self._lock:
            self._default = Outcome(status, reason)

    def fail_next(self, count: int, status: int, reason: str) -> None:
        """Answer the next `count` valid requests (any token) with `status` and `reason`."""
        with self._lock:
            self._forced.extend([Outcome(status, reason)] * count)

    def expire_tokens(self) -> None:
        """Treat every provider token (JWT) seen so far as expired: 403 ExpiredProviderToken."""
        with self._lock:
            self._expired_tokens |= self._seen_tokens

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._outcomes.clear()
            self._default = Outcome()
            self._forced.clear()
            self._expired_tokens.clear()
            self._connections_opened = 0

    # --- reading what happened --------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._connections_opened

    # --- the server side (runs in the fake's event loop thread) -----------------------------------------

    def _connection_made(self, protocol: _APNsServerProtocol) -> int:
        self._protocols.add(protocol)
        with self._lock:
            self._connections_opened += 1
            return self._connections_opened

    def _answer(self, headers: dict, body: bytes, connection: int) -> ReceivedRequest:
        """Decide the answer to one complete request, in the order Apple checks, and record it."""
        path = headers.get(":path", "")
        match = DEVICE_PATH.match(path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = ReceivedRequest(
            method=headers.get(":method", ""),
            path=path,
            headers=headers,
            body=parsed if isinstance(parsed, dict) else None,
            raw_body=body,
            device_token=match.group(1) if match else "",
            connection=connection,
            apns_id=headers.get("apns-id") or str(uuid.uuid4()),
        )
        outcome = self._check(request, headers, body)
        request.status, request.reason = outcome.status, outcome.reason
        with self._lock:
            self._requests.append(request)
        return request

    def _check(self, request: ReceivedRequest, headers: dict, body: bytes) -> Outcome:
        if request.method != "POST":
            return Outcome(405, "MethodNotAllowed")
        if not request.device_token:
            return Outcome(404, "BadPath")

        authorization = headers.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return Outcome(403, "MissingProviderToken")
        token = authorization.split(" ", 1)[1].strip()
        try:
            request.jwt_header = jwt.get_unverified_header(token)
            request.jwt_claims = jwt.decode(
                token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]},
                leeway=60,
            )
        except jwt.PyJWTError:
            return Outcome(403, "InvalidProviderToken")
        if request.jwt_header.get("kid") != self.key_id or request.jwt_claims.get("iss") != self.team_id:
            return Outcome(403, "InvalidProviderToken")
        with self._lock:
            self._seen_tokens.add(token)
            expired = token in self._expired_tokens
        if expired or request.jwt_claims["iat"] < time.time() - JWT_MAX_AGE_SECONDS:
            return Outcome(403, "ExpiredProviderToken")

        topic = headers.get("apns-topic")
        if not topic:
            return Outcome(400, "MissingTopic")
        if topic != self.topic:
            return Outcome(400, "TopicDisallowed")
        if "apns-id" in headers and not _is_uuid(headers["apns-id"]):
            return Outcome(400, "BadMessageId")
        if "apns-push-type" in headers and headers["apns-push-type"] not in PUSH_TYPES:
            return Outcome(400, "InvalidPushType")
        if "apns-priority" in headers and headers["apns-priority"] not in ("1", "5", "10"):
            return Outcome(400, "BadPriority")
        if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
            return Outcome(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return Outcome(400, "BadCollapseId")
        if not DEVICE_TOKEN.match(request.device_token):
            return Outcome(400, "BadDeviceToken")
        if not body:
            return Outcome(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD_BYTES:
            return Outcome(413, "PayloadTooLarge")

        with self._lock:
            if self._forced:
                return self._forced.pop(0)
            return self._outcomes.get(request.device_token, self._default)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _APNsServerProtocol(asyncio.Protocol):
    """One client TLS connection: an h2 server connection answering each stream when it ends."""

    def __init__(self, fake: FakeAPNs):
        self.fake = fake
        self.transport: asyncio.Transport | None = None
        self.connection_number = 0
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, tuple[dict, bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connection_number = self.fake._connection_made(self)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.fake.max_concurrent_streams})
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.fake._protocols.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.transport.write(self.conn.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                if event.stream_id in self.streams:
                    headers, body = self.streams.pop(event.stream_id)
                    asyncio.ensure_future(self.respond(event.stream_id, headers, bytes(body)))
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.conn.data_to_send())

    async def respond(self, stream_id: int, headers: dict, body: bytes) -> None:
        request = self.fake._answer(headers, body, self.connection_number)
        if self.fake.latency:
            await asyncio.sleep(self.fake.latency)
        if self.transport.is_closing():
            return
        response_headers = [(":status", str(request.status)), ("apns-id", request.apns_id)]
        try:
            if request.status == 200:
                self.conn.send_headers(stream_id, response_headers, end_stream=True)
            else:
                error = {"reason": request.reason}
                if request.status == 410:
                    error["timestamp"] = int(time.time() * 1000)
                data = json.dumps(error).encode()
                response_headers += [("content-type", "application/json"), ("content-length", str(len(data)))]
                self.conn.send_headers(stream_id, response_headers)
                self.conn.send_data(stream_id, data, end_stream=True)
        except StreamClosedError:
            return
        self.transport.write(self.conn.data_to_send())


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a fake APNs server until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--dir", default=None, help="where to write the CA and the .p8 key (default: a temp dir)")
    parser.add_argument("--topic", default="com.example.notifier")
    args = parser.parse_args()

    fake = FakeAPNs(host=args.host, port=args.port, latency=args.latency, directory=args.dir, topic=args.topic)
    fake.start()
    config = fake.adapter_config()
    config.pop("key")
    config["key_file"] = fake.key_file
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
