"""End-to-end measurement shared by the transactional, naive and smoke scenarios: run notifier (or the
naive design) against the fakes, send at a rate, and time each message from the client's POST to its
arrival at the fake provider (push, email, sms) or to its inbox row (in_app)."""
from __future__ import annotations

import time
from contextlib import contextmanager

import psycopg

from bench.harness import BIN, DATABASE_URL, Process, api_start, base_env, beat_start, loadgen, workers_start
from bench.loadgen import percentiles

# Where each channel's arrivals come from, and how many a notification of the bench type makes.
CHANNEL_SOURCES = {"push": ("apns", "fcm"), "email": ("sendgrid",), "sms": ("twilio",), "in_app": ("inbox",)}
SOURCES = ("apns", "fcm", "sendgrid", "twilio", "inbox")


@contextmanager
def notifier_stack(fakes, api_workers: int | None = None, with_workers: bool = True, api_threads: int | None = None):
    """granian + the Procfile's Celery workers + beat, sending through the real adapters to the fakes."""
    env = base_env(**fakes.env()) if fakes else base_env()
    started = []
    try:
        api = api_start(env, workers=api_workers, threads=api_threads)
        started.append(api)
        if with_workers:
            started += workers_start(env)
            started.append(beat_start(env))
        yield api, started
    finally:
        for process in reversed(started):
            process.stop()


@contextmanager
def naive_stack(fakes, concurrency: int = 4):
    """The deliberately naive design (bench/naive): its API on granian and its own Celery worker."""
    env = base_env(**fakes.env(), DJANGO_SETTINGS_MODULE="bench.naive.settings")
    started = []
    try:
        api = api_start(env, name="naive-api", wsgi="bench.naive.wsgi")
        started.append(api)
        started.append(Process("naive-worker", [str(BIN / "celery"), "-A", "bench.naive.celery_app", "worker", "-Q",
                                                "naive", "--concurrency", str(concurrency), "--loglevel", "INFO",
                                                "-n", "naive@%h"], env, ready=lambda p: "ready" in p.output(),
                               timeout=90))
        yield api, started
    finally:
        for process in reversed(started):
            process.stop()


def inbox_arrivals(database_url: str = DATABASE_URL) -> dict[str, float]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT data->>'bench_ref', extract(epoch FROM created_at) FROM notifier_inboxitem "
            "WHERE data ? 'bench_ref'"
        ).fetchall()
    return {ref[4:]: float(at) for ref, at in rows if ref}


def collect(fakes, starts: dict[str, float], timeout: float, settle: float = 10.0) -> dict[str, dict[str, float]]:
    """Poll the fakes and the inbox until every message of `starts` arrived, nothing new came for
    `settle` seconds, or `timeout` passed. Returns source -> {ref: arrival}."""
    deadline = time.monotonic() + timeout
    last_total, last_change = -1, time.monotonic()
    while True:
        arrivals = fakes.arrivals()
        arrivals["inbox"] = inbox_arrivals()
        total = sum(len(set(a) & starts.keys()) for a in arrivals.values())
        if total == len(starts) * len(SOURCES):
            return arrivals
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        if now > deadline or now - last_change > settle:
            return arrivals
        time.sleep(1.0)


def latencies(starts: dict[str, float], arrivals: dict[str, dict[str, float]]) -> dict:
    """Per channel: p50/p95/p99 in ms and how many messages never arrived."""
    result = {}
    for channel, sources in CHANNEL_SOURCES.items():
        values, missing = [], 0
        for source in sources:
            got = arrivals.get(source, {})
            for ref, started in starts.items():
                if ref in got:
                    values.append((got[ref] - started) * 1000)
                else:
                    missing += 1
        result[channel] = {**percentiles(values), "missing": missing}
    return result


def completion_rate(starts: dict[str, float], arrivals: dict[str, dict[str, float]]) -> dict:
    """Notifications fully delivered (all five messages) per second, from the first POST to the last
    completion: the end-to-end rate the design sustained."""
    done = []
    for ref in starts:
        times = [arrivals.get(source, {}).get(ref) for source in SOURCES]
        if all(times):
            done.append(max(times))
    if not done:
        return {"completed": 0, "rate": 0.0, "span_s": None}
    span = max(done) - min(starts.values())
    return {"completed": len(done), "sent": len(starts), "span_s": round(span, 2), "rate": round(len(done) / span, 1)}


def run_load(fakes, api_url: str, key: str, *, rate: float, duration: float, users: int,
             concurrency: int = 256, timeout: float = 120) -> dict:
    """Send at `rate` for `duration` s, wait for the messages, and return loadgen + latency + completion."""
    fakes.reset()
    load = loadgen(api_url, key, rate=rate, duration=duration, warmup=0, concurrency=concurrency, users=users,
                   record_refs=True)
    starts = load.pop("starts")
    arrivals = collect(fakes, starts, timeout=timeout)
    return {"load": load, "latency": latencies(starts, arrivals), "completion": completion_rate(starts, arrivals)}


def warm_up(fakes, api_url: str, key: str, users: int) -> None:
    """A few notifications first, so connections, OAuth tokens and compiled templates are ready."""
    run_load(fakes, api_url, key, rate=20, duration=1, users=users, timeout=30)
