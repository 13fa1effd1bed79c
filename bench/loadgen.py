"""The load generator: a separate process (asyncio + aiohttp, keep-alive connections) that POSTs
notifications and prints one JSON result on stdout.

    python -m bench.loadgen --url URL --key KEY --type bench_order --duration 10 --concurrency 32
        closed loop: N clients, each sending its next request when the last one was answered
    python -m bench.loadgen ... --rate 200 --duration 10
        open loop: a request every 1/rate s whatever the answers (so a slow server shows as latency, not
        as a lower offered rate), at most --concurrency in flight
    --recipients 1000    each request carries 1,000 recipients (from the user pool) instead of user_id
    --record-refs        print the wall-clock start of each request by its bench reference
    --get PATH           GET PATH ({user} from the user pool) instead of POSTing: the inbox read load

Every request carries data.bench_ref = <16 hex>, which the bench templates render into each message, so
the fake providers can report when each one arrived (bench/fakes.py).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path

import aiohttp


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def pick(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1], 2), "n": len(ordered)}


class Load:
    def __init__(self, args):
        self.args = args
        self.url = args.url.rstrip("/") + "/api/v1/notifications"
        self.headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
        self.users = itertools.cycle(range(args.users))
        # user id -> recipient token: GETs then read as each user's own app would.
        self.tokens = json.loads(Path(args.tokens_file).read_text()) if args.tokens_file else {}
        self.token_users = itertools.cycle(list(self.tokens))
        self.refs = itertools.count(int.from_bytes(os.urandom(4), "big") << 24)
        self.latencies: list[float] = []
        self.status: dict[str, int] = {}
        self.starts: dict[str, float] = {}
        self.errors: list[str] = []
        self.measure_from = 0.0
        self.in_flight = 0

    def body(self) -> tuple[str, bytes]:
        ref = f"{next(self.refs) & 0xFFFFFFFFFFFFFFFF:016x}"
        payload = {"type": self.args.type, "data": {"order_id": ref[-6:], "bench_ref": f"bref{ref}"}}
        if self.args.channels:
            payload["channels"] = self.args.channels.split(",")
        if self.args.recipients:
            payload["recipients"] = [{"user_id": f"{self.args.user_prefix}{next(self.users)}"}
                                     for _ in range(self.args.recipients)]
        else:
            payload["user_id"] = f"{self.args.user_prefix}{next(self.users)}"
        return ref, json.dumps(payload).encode()

    async def one(self, session: aiohttp.ClientSession) -> None:
        if self.args.get and self.tokens:
            ref, body, user = "", None, next(self.token_users)
            request = session.get(self.args.url.rstrip("/") + self.args.get.format(user=user),
                                  headers={"Authorization": f"Bearer {self.tokens[user]}"})
        elif self.args.get:
            ref, body = "", None
            request = session.get(self.args.url.rstrip("/") + self.args.get.format(
                user=f"{self.args.user_prefix}{next(self.users)}"), headers=self.headers)
        else:
            ref, body = self.body()
            request = session.post(self.url, data=body, headers=self.headers)
        wall, started = time.time(), time.perf_counter()
        self.in_flight += 1
        try:
            async with request as response:
                await response.read()
                status = str(response.status)
        except Exception as error:  # counted, never fatal: an overloaded server is a result
            status = type(error).__name__
            if len(self.errors) < 5:
                self.errors.append(repr(error))
        finally:
            self.in_flight -= 1
        if started >= self.measure_from:
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.status[status] = self.status.get(status, 0) + 1
            if self.args.record_refs and status == "202":
                self.starts[ref] = wall

    async def closed_loop(self, session, deadline):
        async def client():
            while time.perf_counter() < deadline:
                await self.one(session)

        await asyncio.gather(*(client() for _ in range(self.args.concurrency)))

    async def open_loop(self, session, deadline):
        interval = 1.0 / self.args.rate
        tasks = set()
        next_at = time.perf_counter()
        dropped = 0
        while next_at < deadline:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.in_flight >= self.args.concurrency:
                dropped += 1  # the server is this far behind: count it rather than queue without bound
            else:
                task = asyncio.create_task(self.one(session))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_at += interval
        if tasks:
            await asyncio.gather(*tasks)
        self.status["not_sent_too_many_in_flight"] = dropped

    async def run(self) -> dict:
        connector = aiohttp.TCPConnector(limit=self.args.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.perf_counter()
            self.measure_from = start + self.args.warmup
            deadline = start + self.args.warmup + self.args.duration
            if self.args.rate:
                await self.open_loop(session, deadline)
            else:
                await self.closed_loop(session, deadline)
            elapsed = time.perf_counter() - self.measure_from
        usage = resource.getrusage(resource.RUSAGE_SELF)
        accepted = self.status.get("200" if self.args.get else "202", 0)
        return {
            "mode": "open" if self.args.rate else "closed",
            "offered_rate": self.args.rate or None,
            "concurrency": self.args.concurrency,
            "recipients_per_request": self.args.recipients or 1,
            "duration_s": round(elapsed, 2),
            "requests": sum(v for k, v in self.status.items() if k != "not_sent_too_many_in_flight"),
            "accepted": accepted,
            "accepted_per_s": round(accepted / elapsed, 1) if elapsed > 0 else 0,
            "recipients_per_s": round(accepted * (self.args.recipients or 1) / elapsed, 1) if elapsed > 0 else 0,
            "status": self.status,
            "latency_ms": percentiles(self.latencies),
            "loadgen_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "errors": self.errors,
            "starts": self.starts,
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="notifier load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--type", default="bench_order")
    parser.add_argument("--channels", default="")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--recipients", type=int, default=0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--user-prefix", default="bench-u")
    parser.add_argument("--record-refs", action="store_true")
    parser.add_argument("--tokens-file", default="", help="JSON {user_id: recipient token}: GET as each user")
    parser.add_argument("--get", default="", help="GET this path instead ({user} is replaced), e.g. an inbox page")
    args = parser.parse_args(argv)
    result = asyncio.run(Load(args).run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
