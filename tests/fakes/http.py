"""A small threaded HTTP/1.1 server to build fake provider APIs on.

A fake listens on 127.0.0.1 (an ephemeral port unless told otherwise) in a background thread, records every
request it receives, and answers each one with an Outcome programmed per recipient or by default:

    with FakeSendGrid() as fake:                       # start() / stop() also work
        fake.set_outcome("gone@example.com", status=400)
        fake.set_default(status=202, delay=0.05)       # every other recipient
        ... point the SDK at fake.url ...
        fake.requests[0].headers["Authorization"]      # headers are case-insensitive
        fake.requests[0].body                          # parsed: JSON for SendGrid, form fields for Twilio
        fake.clear()                                   # forget requests and programmed outcomes

`latency` (seconds, constructor or attribute) delays every answer, for benchmarks. An Outcome may also
carry its own `delay` (to provoke a client timeout) or `drop=True` (close the connection without
answering, as a crashed load balancer would).

Subclasses implement `parse_body`, `recipients` and `respond`, and may override `reject` to refuse
requests before any outcome applies (wrong path, bad credentials).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from email.message import Message as HeaderMap
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: HeaderMap  # case-insensitive: headers["authorization"] works
    body: object  # parsed by the fake: a dict for JSON or form bodies
    raw: bytes
    received_at: float = field(default_factory=time.time)  # wall clock, for end-to-end latency in benchmarks
    client: tuple = ()  # the client's (host, port): one per connection, so a test can tell a kept-alive one


@dataclass(frozen=True)
class Outcome:
    """How to answer. `body` None means "the provider's usual body for this status"."""

    status: int
    body: object = None  # dict/list (sent as JSON), str or bytes
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass(frozen=True)
class Reply:
    """The exact answer written on the wire."""

    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""


def json_reply(status: int, payload: object, headers: dict | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode())


class FakeHTTPServer:
    """Base class for the fake provider APIs: threading, recording and programmed outcomes."""

    default_outcome = Outcome(status=200)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0):
        self.host = host
        self.latency = latency
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._outcomes: dict[str, Outcome] = {}
        self._default = self.default_outcome
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle

    def start(self) -> "FakeHTTPServer":
        server = _Server((self.host, self._requested_port), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ----- programming and inspection

    def set_outcome(self, to: str, status: int, body: object = None, headers: dict | None = None,
                    delay: float = 0.0, drop: bool = False) -> None:
        """Answer every request addressed to `to` (an email address or a phone number) this way."""
        with self._lock:
            self._outcomes[to] = Outcome(status, body, dict(headers or {}), delay, drop)

    def set_default(self, status: int, body: object = None, headers: dict | None = None,
                    delay: float = 0.0, drop: bool = False) -> None:
        """Answer requests for recipients without their own outcome this way."""
        with self._lock:
            self._default = Outcome(status, body, dict(headers or {}), delay, drop)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests received and every programmed outcome."""
        with self._lock:
            self._requests.clear()
            self._outcomes.clear()
            self._default = self.default_outcome

    # ----- for subclasses

    def parse_body(self, headers: HeaderMap, raw: bytes) -> object:
        return raw

    def recipients(self, request: ReceivedRequest) -> list[str]:
        """The addresses or numbers a request is for, used to look up programmed outcomes."""
        return []

    def reject(self, request: ReceivedRequest) -> Reply | None:
        """A reply that refuses the request before any outcome applies, or None to go on."""
        return None

    def respond(self, request: ReceivedRequest, outcome: Outcome) -> Reply:
        raise NotImplementedError

    # ----- internals

    def _outcome_for(self, request: ReceivedRequest) -> Outcome:
        with self._lock:
            for to in self.recipients(request):
                if to in self._outcomes:
                    return self._outcomes[to]
            return self._default

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once


def _handler_for(fake: FakeHTTPServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
        # Buffer the answer so headers and body leave in one packet: written separately, Nagle's algorithm
        # and the client's delayed ACK add 40 ms to every keep-alive request.
        wbufsize = -1

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = fake.parse_body(self.headers, raw)
            except ValueError:
                body = None
            request = ReceivedRequest(self.command, self.path, self.headers, body, raw, client=self.client_address)
            fake._record(request)

            reply = fake.reject(request)
            delay = fake.latency
            if reply is None:
                outcome = fake._outcome_for(request)
                delay += outcome.delay
                if outcome.drop:
                    self.close_connection = True
                    return
                reply = fake.respond(request, outcome)
            if delay:
                time.sleep(delay)
            try:
                self._write(reply)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up waiting (a timeout test): nothing left to answer.
                self.close_connection = True

        def _write(self, reply: Reply):
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.body:
                self.wfile.write(reply.body)
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format, *args):  # keep test output quiet
            pass

    return Handler


def standalone(fake_class, description: str, argv: list[str] | None = None, **extra_options) -> None:
    """The command line of `python -m tests.fakes.<provider> --port N [--latency S]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    for option, help_text in extra_options.items():
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option, help=help_text)
    args = parser.parse_args(argv)
    options = {name: getattr(args, name) for name in extra_options if getattr(args, name) is not None}
    fake = fake_class(host=args.host, port=args.port, latency=args.latency, **options)
    fake.start()
    print(f"{fake_class.__name__} listening on {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
