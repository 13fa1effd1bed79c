"""The stream server's ASGI app: `uvicorn notifier.streams.asgi:app`.

It answers GET /api/v1/users/{user_id}/notifications/stream exactly as the API's InboxStreamView does (the
same functions decide: notifier/api/inbox.py, "the stream's rules"), the CORS preflight of that path, and
/healthz; any other path is a 404 in the API's error envelope, since the rest of the API is served by the
API's own server.

A plain ASGI app rather than Django's ASGI handler: an open stream then costs a coroutine, a Listener and a
task that waits for the client to leave, not a request object through the middleware stack (whose sync
middleware would run on one shared thread); the few checks the middleware makes on this path are called
here by name (the Host header, input_problems, the inbox CORS rule).

Database work (the caller, the replay, the badge) runs through sync_to_async on a small pool of threads of
its own (NOTIFIER_STREAM_DATABASE_THREADS): a stream holds no connection while it waits, the process holds at
most one per thread, and every such call has a deadline (DATABASE_SECONDS).
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifier_project.settings")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import DatabaseError, close_old_connections  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402
from rest_framework import exceptions  # noqa: E402

from notifier.api.auth import AUTHENTICATE_HEADER  # noqa: E402
from notifier.api.cors import inbox_cors_headers, inbox_origin_allowed  # noqa: E402
from notifier.api.errors import api_exception_error, error_json, no_endpoint_error  # noqa: E402
from notifier.api.inbox import (  # noqa: E402
    STREAM_CONTENT_TYPE,
    STREAM_KEEPALIVE_FRAME,
    StreamClock,
    stream_access,
    stream_badge_frame,
    stream_opening,
    stream_replay_after,
)
from notifier.api.middleware import input_problems  # noqa: E402
from notifier.inbox import inbox_channel  # noqa: E402
from notifier.streams.hub import Hub, HubUnavailable  # noqa: E402

log = logging.getLogger(__name__)
access_log = logging.getLogger("notifier.streams.access")

STREAM_URL_NAME = "inbox-stream"
# A database call that has not answered in this long fails the stream (503 before it starts, its end after):
# the thread goes on until PostgreSQL answers, but no stream waits on it.
DATABASE_SECONDS = 10.0
# A client that has not taken a frame in this long (its socket's buffers are full) is let go; it replays on
# its reconnect.
WRITE_SECONDS = 30.0
# EventSource reconnects by itself after an error status only if told to by the page (it does not): the
# widget's own back-off then applies. A 503 says when to try again.
RETRY_AFTER_SECONDS = "5"


def _open_files_raised() -> None:
    """Each stream is a socket: 10,000 of them need more than the usual soft limit of 1,024 open files. The
    soft limit goes up to the hard one, which an unprivileged process may do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_open_files_raised()

_database_threads = ThreadPoolExecutor(max_workers=settings.NOTIFIER_STREAM_DATABASE_THREADS,
                                       thread_name_prefix="stream-database")


def _on_database_thread(function):
    """`function` as a coroutine run on the database threads, with Django's per-request connection care:
    a broken or expired connection is dropped before and after (close_old_connections), as a request does."""

    def call(*args):
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    run = sync_to_async(call, thread_sensitive=False, executor=_database_threads)

    async def with_deadline(*args):
        async with asyncio.timeout(DATABASE_SECONDS):
            return await run(*args)

    return with_deadline


_access = _on_database_thread(stream_access)
_opening = _on_database_thread(stream_opening)
_badge = _on_database_thread(stream_badge_frame)


class _Answer(Exception):
    """An answer given before the stream starts (an error in the API's envelope)."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()):
        self.status, self.body, self.headers = status, body, list(headers)


def _api_error(exc: exceptions.APIException) -> _Answer:
    headers = []
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        headers.append(("WWW-Authenticate", AUTHENTICATE_HEADER))
    return _Answer(exc.status_code, orjson.dumps({"error": api_exception_error(exc)}), headers)


def _unavailable(what: str) -> _Answer:
    return _Answer(503, error_json("unavailable", f"{what} Try again in a few seconds."),
                   [("Retry-After", RETRY_AFTER_SECONDS)])


class Request:
    """What the app reads of an HTTP scope."""

    __slots__ = ("client", "method", "path", "headers", "query")

    def __init__(self, scope):
        self.client = "%s:%s" % tuple(scope["client"]) if scope.get("client") else "-"
        self.method = scope["method"]
        self.path = scope["path"]
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.query = QueryDict(scope["query_string"])

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def _stream_user_id(path: str) -> str | None:
    """The user id when `path` is the stream's (Django's own URL pattern decides), else None."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.kwargs.get("user_id") if match.url_name == STREAM_URL_NAME else None


def _host_allowed(host: str) -> bool:
    # As HttpRequest.get_host() checks it (DisallowedHost).
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


class StreamServer:
    def __init__(self):
        self.hub = Hub(settings.REDIS_URL)
        self.open_streams = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(Request(scope), receive, send)
        # websocket: not served; returning closes it

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, request: Request, receive, send):
        cors = []  # the inbox CORS headers, once the path is known to be the stream's
        try:
            if request.path == "/healthz":
                body = {"status": "ok", "open_streams": self.open_streams, "channels": self.hub.channels,
                        "redis": "connected" if self.hub.connected else "not connected"}
                raise _Answer(200, orjson.dumps(body))
            user_id = _stream_user_id(request.path)
            if user_id is None:
                raise _Answer(404, orjson.dumps({"error": no_endpoint_error(request.path)}))
            origin = request.header("origin")
            if origin and inbox_origin_allowed(origin):
                cors = inbox_cors_headers(origin, preflight=False) + [("Vary", "Origin")]
            if not _host_allowed(request.header("host")):
                raise _Answer(400, error_json("bad_request", "Invalid Host header."))
            if cors and request.method == "OPTIONS" and "access-control-request-method" in request.headers:
                await _answer(send, _Answer(204, b"", inbox_cors_headers(origin, preflight=True) + cors[1:]), request)
                return
            if request.method != "GET":
                raise _Answer(405, orjson.dumps({"error": api_exception_error(
                    exceptions.MethodNotAllowed(request.method))}), [("Allow", "GET")])
            if problems := input_problems({"user_id": user_id}, request.query.lists()):
                name, first = next(iter(problems.items()))
                raise _Answer(400, error_json("invalid", f"{name}: {first[0]}", problems))
            if self.open_streams >= settings.NOTIFIER_STREAM_MAX_OPEN:
                raise _unavailable("This stream server has as many streams open as it may.")
            await self._stream(request, user_id, cors, receive, send)
        except _Answer as answer:
            answer.headers += cors
            await _answer(send, answer, request)
        except Exception:
            log.exception("stream server: %s %s failed before its stream started", request.method, request.path)
            await _answer(send, _Answer(500, error_json("server_error", "Internal server error."), cors), request)

    async def _stream(self, request: Request, user_id: str, cors: list, receive, send):
        try:
            recipient_id = await _access(request.header("authorization"), request.query.get("token", ""), user_id)
        except exceptions.APIException as exc:
            raise _api_error(exc) from None
        except (DatabaseError, TimeoutError):
            raise _unavailable("The database did not answer.") from None
        try:
            listener = await self.hub.join(inbox_channel(user_id))
        except HubUnavailable as error:
            log.warning("stream server: refused a stream: %s", error)
            raise _unavailable("Live updates are unavailable (Redis).") from None
        self.open_streams += 1
        watcher = asyncio.get_running_loop().create_task(_client_left(receive, listener))
        try:
            # Subscribed first, then the rows: nothing committed in between is missed.
            try:
                opening = await _opening(recipient_id, stream_replay_after(request.header("last-event-id")))
            except (DatabaseError, TimeoutError):
                raise _unavailable("The database did not answer.") from None
            headers = [("Content-Type", STREAM_CONTENT_TYPE), ("Cache-Control", "no-cache"),
                       ("X-Accel-Buffering", "no"), ("X-Content-Type-Options", "nosniff"), *cors]
            await send({"type": "http.response.start", "status": 200, "headers": _encoded(headers)})
            _access_log(request, 200)
            try:
                await self._events(listener, recipient_id, opening, send)
            except Exception:  # the answer has started: nothing can be answered, the socket closes
                log.exception("stream server: a stream of %s failed", listener.channel)
        finally:
            watcher.cancel()
            self.hub.leave(listener)
            self.open_streams -= 1

    async def _events(self, listener, recipient_id: int, opening: str, send):
        """The stream once it has started: a status can no longer be answered, so whatever ends it (its
        time, Redis, the database, a slow client) ends it cleanly, and the client reconnects."""
        try:
            await _write(send, opening)
            clock = StreamClock()
            while wait := clock.wait():
                frame = await listener.next(wait)
                if frame is None:
                    if listener.ended is not None:
                        break
                    if clock.heartbeat_due():
                        await _write(send, STREAM_KEEPALIVE_FRAME)
                        clock.sent()
                    continue
                # The item goes out at once; the badge follows once read (one read for whatever came
                # meanwhile): an item never waits on the database threads, which every stream shares.
                await _write(send, "".join([frame, *listener.drain()]))
                await _write(send, await _badge(recipient_id))
                clock.sent()
        except _ClientStuck:
            # Nothing more can be written; returning without the last chunk makes uvicorn close the socket.
            log.debug("stream server: let go of a stream of %s: its client took nothing for %s s",
                      listener.channel, WRITE_SECONDS)
            return
        except (DatabaseError, TimeoutError) as error:
            listener.end(f"database: {error!r}")
        if listener.ended not in (None, "client left"):
            log.debug("stream server: ended a stream of %s early: %s", listener.channel, listener.ended)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ClientStuck(Exception):
    pass


async def _client_left(receive, listener) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    listener.end("client left")


async def _write(send, text: str) -> None:
    try:
        async with asyncio.timeout(WRITE_SECONDS):
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
    except TimeoutError:
        raise _ClientStuck from None


def _encoded(headers) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _access_log(request: Request, status: int) -> None:
    # Our own access line, without the query string: the stream's `?token=` is a recipient token, which must
    # not end up in logs (uvicorn's own access log, which prints it, is off: --no-access-log).
    access_log.info('%s "%s %s" %s', request.client, request.method, request.path, status)


async def _answer(send, answer: _Answer, request: Request) -> None:
    headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
    if answer.body:
        headers.append(("Content-Type", "application/json"))
    await send({"type": "http.response.start", "status": answer.status, "headers": _encoded(headers)})
    await send({"type": "http.response.body", "body": answer.body})
    _access_log(request, answer.status)


app = StreamServer()
