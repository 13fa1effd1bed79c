"""A Server-Sent Events client on asyncio, light enough to hold 10,000 streams in one process: HTTP/1.1 on a
plain socket, chunked transfer decoding, SSE's field parsing. The streams scenario (bench/scenarios/
streams.py) and the stream server's tests (tests/streams) use it; requests or aiohttp would cost a thread or
far more memory per stream.

    stream = await SseStream.open("http://127.0.0.1:8001", "/api/v1/users/u_1/notifications/stream?token=…")
    stream.status, stream.headers            # the answer's status and headers (lower-case names)
    event = await stream.next_event()         # Event(name, data, id, arrived_at), None once the stream ended
"""
from __future__ import annotations

import asyncio
import codecs
import resource
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Event:
    name: str
    data: str
    id: str | None
    arrived_at: float  # time.monotonic() when its last byte was read


def open_files_raised(wanted: int) -> int:
    """Raise this process's soft limit of open files to `wanted` (at most the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class SseStream:
    def __init__(self, reader, writer, status: int, headers: dict[str, str]):
        self.reader, self.writer = reader, writer
        self.status, self.headers = status, headers
        self.comments = 0  # lines starting with ":" (heartbeats)
        self.retry: int | None = None
        self.ended = False
        self._text = ""
        self._events: list[Event] = []
        self._chunked = "chunked" in headers.get("transfer-encoding", "")
        self._decoder = codecs.getincrementaldecoder("utf-8")()  # a chunk may end inside a character
        self._left_in_chunk = 0

    @classmethod
    async def open(cls, base_url: str, path: str, headers: dict | None = None, timeout: float = 30) -> "SseStream":
        parts = urlsplit(base_url)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
                     *(f"{name}: {value}" for name, value in (headers or {}).items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status_line = await reader.readuntil(b"\r\n")
            answer_headers = {}
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                answer_headers[name.strip().lower()] = value.strip()
        return cls(reader, writer, int(status_line.split()[1]), answer_headers)

    async def body(self, timeout: float = 30) -> bytes:
        """The whole body of an answer that is not a stream (an error: its length is given)."""
        async with asyncio.timeout(timeout):
            length = int(self.headers.get("content-length", "0"))
            return await self.reader.readexactly(length) if length else b""

    async def next_event(self) -> Event | None:
        """The next event, or None once the server has ended the stream (or the connection is gone)."""
        while not self._events:
            if self.ended:
                return None
            data = await self._read()
            if data is None:
                self.ended = True
                return None
            self._text += data
            arrived_at = time.monotonic()
            while "\n\n" in self._text:
                block, self._text = self._text.split("\n\n", 1)
                self._parse(block, arrived_at)
        return self._events.pop(0)

    async def _read(self) -> str | None:
        try:
            if not self._chunked:
                data = await self.reader.read(65536)
                return self._decoder.decode(data) if data else None
            if self._left_in_chunk == 0:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return None
                self._left_in_chunk = size
            data = await self.reader.read(self._left_in_chunk)
            if not data:
                return None
            self._left_in_chunk -= len(data)
            if self._left_in_chunk == 0:
                await self.reader.readexactly(2)  # the chunk's CRLF
            return self._decoder.decode(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def _parse(self, block: str, arrived_at: float) -> None:
        fields = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "retry" in fields and fields["retry"].isdigit():
            self.retry = int(fields["retry"])
        if "event" in fields or "data" in fields:
            self._events.append(Event(fields.get("event", "message"), fields.get("data", ""), fields.get("id"),
                                      arrived_at))

    async def wait_for(self, name: str, timeout: float = 10) -> Event:
        """The next event called `name` (skipping others); TimeoutError after `timeout` s, EOFError if the
        stream ends first."""
        async with asyncio.timeout(timeout):
            while (event := await self.next_event()) is not None:
                if event.name == name:
                    return event
        raise EOFError(f"the stream ended before a {name} event")

    def close(self) -> None:
        self.writer.close()
