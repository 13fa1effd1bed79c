"""The streams scenario's client (bench/scenarios/streams.py), a process of its own: it opens one live inbox
stream per recipient token of --tokens-file on the stream server, keeps them all open and reading, and on
commands read from stdin, one per line, answers one JSON line on stdout:

    (at start)           {"opened", "failed", "errors", "seconds"}
    sample N RATE        publishes N frames, RATE a second, each to another open stream's channel, as the
                         pipeline publishes new items (PUBLISH of an SSE frame on notifier:inbox:<user id>),
                         and times each from just before its PUBLISH to its arrival:
                         {"published", "received", "p50_ms", "p99_ms", "max_ms"}
    status               {"open", "ended"}
    stop                 closes every stream: {"open", "ended"}, then exits
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import orjson
import redis.asyncio

from bench.sse_client import SseStream, open_files_raised

CHANNEL_PREFIX = "notifier:inbox:"  # notifier.inbox.CHANNEL_PREFIX (this process does not load Django)


def frame(event_id: int, payload: dict) -> str:
    # As notifier.inbox.sse_frame writes a `notification` frame.
    return f"id: {event_id}\nevent: notification\ndata: {orjson.dumps(payload).decode()}\n\n"


class Load:
    def __init__(self, url: str, users: list[tuple[str, str]]):
        self.url, self.users = url, users
        self.streams: dict[str, SseStream] = {}
        self.arrivals: dict[str, float] = {}
        self.readers: list[asyncio.Task] = []

    async def open_all(self, batch: int) -> dict:
        started, failed, errors = time.monotonic(), 0, {}
        for start in range(0, len(self.users), batch):
            chunk = self.users[start:start + batch]
            results = await asyncio.gather(*[self._open(user_id, token) for user_id, token in chunk],
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) or result is None:
                    failed += 1
                    reason = type(result).__name__ if isinstance(result, BaseException) else "refused"
                    errors[reason] = errors.get(reason, 0) + 1
        return {"opened": len(self.streams), "failed": failed, "errors": errors,
                "seconds": round(time.monotonic() - started, 1)}

    async def _open(self, user_id: str, token: str):
        stream = await SseStream.open(self.url, f"/api/v1/users/{user_id}/notifications/stream?token={token}")
        if stream.status != 200:
            stream.close()
            return None
        await stream.wait_for("unread_count", timeout=60)
        self.streams[user_id] = stream
        self.readers.append(asyncio.get_running_loop().create_task(self._read(stream)))
        return stream

    async def _read(self, stream: SseStream) -> None:
        while (event := await stream.next_event()) is not None:
            if event.name == "notification":
                self.arrivals.setdefault(event.id, event.arrived_at)

    async def sample(self, client, count: int, rate: float) -> dict:
        open_users = [user_id for user_id, stream in self.streams.items() if not stream.ended]
        chosen = random.sample(open_users, min(count, len(open_users)))
        base = int(time.time() * 1000) * 1000  # ids of this sample, distinct from every other sample's
        published = {}
        started = time.monotonic()
        for index, user_id in enumerate(chosen):
            event_id = str(base + index)
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            published[event_id] = time.monotonic()
            await client.publish(CHANNEL_PREFIX + user_id, frame(int(event_id), {"bench": event_id}))
        deadline = time.monotonic() + 10
        while len([i for i in published if i in self.arrivals]) < len(published) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        latencies = sorted((self.arrivals[i] - at) * 1000 for i, at in published.items() if i in self.arrivals)

        def pick(q):
            return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))], 1) if latencies else None

        return {"published": len(published), "received": len(latencies), "p50_ms": pick(0.5),
                "p99_ms": pick(0.99), "max_ms": round(latencies[-1], 1) if latencies else None}

    def status(self) -> dict:
        ended = sum(stream.ended for stream in self.streams.values())
        return {"open": len(self.streams) - ended, "ended": ended}


async def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens-file", required=True, help="JSON [[user id, recipient token], …]")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--batch", type=int, default=200, help="streams opened at once")
    args = parser.parse_args(argv)
    users = [tuple(pair) for pair in json.loads(open(args.tokens_file).read())]
    open_files_raised(len(users) + 1000)
    load = Load(args.url, users)
    client = redis.asyncio.Redis.from_url(args.redis_url)

    def say(document: dict) -> None:
        print(json.dumps(document), flush=True)

    say(await load.open_all(args.batch))
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if line[0] == "sample":
            say(await load.sample(client, int(line[1]), float(line[2])))
        elif line[0] == "status":
            say(load.status())
        elif line[0] == "stop":
            break
    final = load.status()
    for stream in load.streams.values():
        stream.close()
    say(final)


if __name__ == "__main__":
    asyncio.run(main())
