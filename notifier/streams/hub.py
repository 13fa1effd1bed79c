"""One Redis connection per stream-server process, subscribed to the inbox channels of the streams open in
it; each message on a channel is handed to every stream of that channel (a Listener each).

Not a connection per stream: 10,000 streams would be 10,000 Redis clients. Not redis-py's PubSub either: it
reconnects and resubscribes by itself, which would hide the gap in which messages were lost. Here a lost
connection ends every stream of the process at once, cleanly, and each client reconnects (EventSource,
after the stream's retry line) with Last-Event-ID and is replayed what it missed from the rows, which are
the truth (notifier/inbox.py). So the hub speaks the few commands of RESP2's subscribed mode itself
(SUBSCRIBE, UNSUBSCRIBE, PING, AUTH before them) on an asyncio stream, and reads the URL as redis-py does.

Channels are subscribed one by one, not by a pattern: PUBSUB NUMSUB, which inbox_items_published asks
before it reads and publishes new items, then counts this process once per user with a stream open here.
A channel is unsubscribed when its last stream ends.

Every wait has a deadline:
- connecting (and AUTH) at most NOTIFIER_REDIS_TIMEOUT_SECONDS;
- a subscribe waits at most as long for Redis to confirm it (a stream reads its rows only once subscribed,
  so that nothing committed in between is missed);
- a PING goes every NOTIFIER_STREAM_REDIS_PING_SECONDS, and a connection that says nothing for that long
  plus NOTIFIER_REDIS_TIMEOUT_SECONDS is dead: a hung or vanished server, which TCP may not notice for
  minutes;
- after a failure the server's breaker (notifier/redis_client.py) stays open for
  NOTIFIER_REDIS_BREAKER_SECONDS: new streams are refused at once meanwhile (HubUnavailable), then one
  connection is tried again.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque

from django.conf import settings
from redis.connection import parse_url

from notifier.redis_client import breaker_for

log = logging.getLogger(__name__)

# A stream whose client reads slower than its events come (its socket is full) falls this many frames
# behind at most; then it ends, and its client's reconnect replays the rows instead.
LISTENER_BACKLOG = 100
CLIENT_NAME = "notifier-streams"


class HubUnavailable(Exception):
    """Redis did not answer (or its breaker is open): the stream cannot be subscribed."""


class RedisReplyError(Exception):
    """Redis answered an error (-ERR …), e.g. to AUTH."""


class Listener:
    """One stream's end of the hub: the frames published on its channel that it has not taken yet, and
    why it ended (`ended`: None while it is open)."""

    __slots__ = ("channel", "ended", "_frames", "_waiter")

    def __init__(self, channel: str):
        self.channel = channel
        self.ended: str | None = None
        self._frames: deque[str] = deque()
        self._waiter: asyncio.Future | None = None

    async def next(self, timeout: float) -> str | None:
        """The next frame, or None after `timeout` seconds without one, or once the listener has ended."""
        if not self._frames and self.ended is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        return self._frames.popleft() if self._frames else None

    def drain(self) -> list[str]:
        """The frames already waiting, taken at once."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._wake()

    def _push(self, frame: str) -> None:
        if self.ended is not None:
            return
        if len(self._frames) >= LISTENER_BACKLOG:
            self._frames.clear()
            self.end("client too slow")
            return
        self._frames.append(frame)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"".join([b"*%d\r\n" % len(encoded)] + [b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded])


async def _reply(reader: asyncio.StreamReader):
    """One RESP2 reply: an array (a list), a bulk string (bytes), an integer, a status (bytes)."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        return None if rest == b"-1" else [await _reply(reader) for _ in range(int(rest))]
    if kind == b"$":
        if rest == b"-1":
            return None
        return (await reader.readexactly(int(rest) + 2))[:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisReplyError(rest.decode(errors="replace"))
    raise ConnectionError(f"not a RESP reply: {line[:40]!r}")


class Hub:
    def __init__(self, url: str):
        self.url = url
        self.breaker = breaker_for(url)
        self._channels: dict[str, set[Listener]] = {}
        # Per channel, a future for each SUBSCRIBE sent and not yet confirmed: Redis confirms them in order.
        # Its result is True once confirmed, False when the connection was lost first.
        self._confirmations: dict[str, deque[asyncio.Future]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def channels(self) -> int:
        return len(self._channels)

    async def join(self, channel: str) -> Listener:
        """A listener of `channel`, once Redis has confirmed the subscription; HubUnavailable when Redis
        cannot be reached or does not confirm in time."""
        await self._connected()
        if self._writer is None:  # lost again before this stream's turn came
            raise HubUnavailable("Redis connection lost")
        listener = Listener(channel)
        listeners = self._channels.get(channel)
        if listeners is None:
            listeners = self._channels[channel] = set()
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmations.setdefault(channel, deque()).append(confirmed)
            self._writer.write(_command("SUBSCRIBE", channel))
        else:
            pending = self._confirmations.get(channel)
            confirmed = pending[-1] if pending else None  # None: the channel's subscription is confirmed
        listeners.add(listener)
        if confirmed is not None:
            try:
                async with asyncio.timeout(settings.NOTIFIER_REDIS_TIMEOUT_SECONDS):
                    subscribed = await asyncio.shield(confirmed)
            except BaseException as error:  # includes the client leaving (cancelled) meanwhile
                self.leave(listener)
                if isinstance(error, TimeoutError):
                    raise HubUnavailable("Redis did not confirm the subscription in time") from error
                raise
            if not subscribed:
                self.leave(listener)
                raise HubUnavailable("Redis connection lost")
        return listener

    def leave(self, listener: Listener) -> None:
        """The stream of `listener` is over; the channel is unsubscribed when it was the last one."""
        listeners = self._channels.get(listener.channel)
        if listeners is None or listener not in listeners:
            return  # the connection it came from is gone, and with it its subscriptions
        listeners.discard(listener)
        if not listeners:
            del self._channels[listener.channel]
            if self._writer is not None:
                self._writer.write(_command("UNSUBSCRIBE", listener.channel))

    async def close(self) -> None:
        self._lost("the server is stopping", breaker=False)

    # --- the connection ----------------------------------------------------------------------------------

    async def _connected(self) -> None:
        if self._writer is not None:
            return
        if self._connecting is None:
            if not self.breaker.allow():
                raise HubUnavailable(f"{self.breaker.server} did not answer lately; not asked")
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        try:
            await asyncio.shield(self._connecting)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, RedisReplyError, ConnectionError) as error:
            raise HubUnavailable(f"cannot connect to Redis: {error!r}") from error

    async def _connect(self) -> None:
        options = parse_url(self.url)
        try:
            async with asyncio.timeout(settings.NOTIFIER_REDIS_TIMEOUT_SECONDS):
                if "path" in options:
                    reader, writer = await asyncio.open_unix_connection(options["path"])
                else:
                    tls = ssl.create_default_context() if self.url.startswith("rediss://") else None
                    if tls is not None and str(options.get("ssl_cert_reqs", "")).lower() in ("none", "0"):
                        tls.check_hostname = False
                        tls.verify_mode = ssl.CERT_NONE
                    reader, writer = await asyncio.open_connection(options.get("host", "localhost"),
                                                                   options.get("port", 6379), ssl=tls)
                try:
                    if options.get("password"):
                        credentials = [options["username"]] if options.get("username") else []
                        writer.write(_command("AUTH", *credentials, options["password"]))
                        await _reply(reader)
                    # Named, so that CLIENT LIST shows which connection is a stream server's hub.
                    writer.write(_command("CLIENT", "SETNAME", CLIENT_NAME))
                    await _reply(reader)
                except BaseException:
                    writer.close()
                    raise
        except BaseException as error:
            self.breaker.failed(error)
            raise
        finally:
            self._connecting = None
        self.breaker.succeeded()
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(reader, writer)), loop.create_task(self._ping(writer))]
        log.info("stream hub: connected to %s", self.breaker.server)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silence = settings.NOTIFIER_STREAM_REDIS_PING_SECONDS + settings.NOTIFIER_REDIS_TIMEOUT_SECONDS
        try:
            while True:
                async with asyncio.timeout(silence):
                    reply = await _reply(reader)
                kind = reply[0]
                if kind == b"message":
                    listeners = self._channels.get(reply[1].decode())
                    if listeners:
                        frame = reply[2].decode()
                        for listener in listeners:
                            listener._push(frame)
                elif kind == b"subscribe":
                    pending = self._confirmations.get(reply[1].decode())
                    if pending:
                        future = pending.popleft()
                        if not pending:
                            del self._confirmations[reply[1].decode()]
                        if not future.done():
                            future.set_result(True)
                # "unsubscribe" and "pong" need nothing: the pong's arrival is what the deadline waits for.
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if self._writer is writer:
                self._lost(f"no reply for {silence} s")
        except Exception as error:  # refused, reset, closed, a reply we do not know
            if self._writer is writer:
                self._lost(repr(error))

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(settings.NOTIFIER_STREAM_REDIS_PING_SECONDS)
            if writer.is_closing():
                return
            writer.write(_command("PING"))

    def _lost(self, reason, breaker: bool = True) -> None:
        """The connection is gone: every stream of the process ends now (its client reconnects and is
        replayed what it missed), and the next stream connects again (after the breaker's window)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if breaker:
            self.breaker.failed(reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        ended = sum(len(listeners) for listeners in self._channels.values())
        for listeners in self._channels.values():
            for listener in listeners:
                listener.end("redis connection lost")
        self._channels.clear()
        for pending in self._confirmations.values():
            for future in pending:
                if not future.done():
                    future.set_result(False)
        self._confirmations.clear()
        if writer is not None:
            log.log(logging.WARNING if breaker else logging.INFO, "stream hub: closed the connection to %s (%s); "
                    "ended its %s streams", self.breaker.server, reason, ended)
