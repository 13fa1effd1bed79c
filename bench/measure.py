"""Measurements taken while a long run drains (the campaign scenario): worker memory sampled from /proc,
Celery messages counted from Celery's own task-sent events, what bench/probes.py recorded in the workers,
and high-priority notifications sent through the run to time the transactional path beside it."""
from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from bench.loadgen import percentiles

PAGE_KB = 4  # /proc/<pid>/statm counts pages; VmRSS in status is in kB already


# --- worker memory ------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float | None:
    """Resident set size of one process in MB (VmRSS), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of `pid` (a Celery worker's prefork pool), from /proc."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


class RssSampler:
    """Samples the RSS of some processes and all their children every `interval` s in a thread. Each
    process seen gets {"name", "pid", "first", "last", "peak", "samples"} in MB; a pool child replaced
    mid-run is a new entry, so growth is always last − first of one process."""

    def __init__(self, processes: dict[str, int], interval: float = 0.5):
        self.roots = dict(processes)
        self.interval = interval
        self.seen: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        for name, pid in self.roots.items():
            for index, process in enumerate([pid] + children(pid)):
                value = rss_mb(process)
                if value is None:
                    continue
                entry = self.seen.get(process)
                if entry is None:
                    label = name if index == 0 else f"{name} child"
                    entry = self.seen[process] = {"name": label, "pid": process, "first": value, "peak": value,
                                                  "samples": 0}
                entry["last"] = value
                entry["peak"] = max(entry["peak"], value)
                entry["samples"] += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict:
        """Stop sampling; {"processes": [...], "peak_mb": highest peak, "peak_of": its name,
        "growth_mb": the largest last − first, "growth_of": its name}."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sample()
        processes = [{**e, **{k: round(e[k], 1) for k in ("first", "last", "peak")}} for e in self.seen.values()]
        if not processes:
            return {"processes": [], "peak_mb": None, "growth_mb": None}
        peak = max(processes, key=lambda e: e["peak"])
        growth = max(processes, key=lambda e: abs(e["last"] - e["first"]))
        return {"processes": processes, "peak_mb": peak["peak"], "peak_of": peak["name"],
                "growth_mb": round(growth["last"] - growth["first"], 1), "growth_of": growth["name"]}


class Analyzer:
    """Where the server runs with autovacuum off (as this machine's does), ANALYZE the tables a run grows
    every `interval` s in a thread, as autovacuum would on a production server. Without it the planner
    never learns that notifier_delivery went from nothing to millions of rows within the run, and answers
    a lookup of 1,000 notification ids with a parallel scan of the whole table (170 ms at 200,000 rows,
    and both cores). `enabled` says whether it had to."""

    TABLES = ("notifier_notification", "notifier_delivery", "notifier_inboxitem", "notifier_deliveryevent",
              "notifier_deliveryattempt")

    def __init__(self, database_url: str, interval: float = 15.0):
        import psycopg

        self.connection = psycopg.connect(database_url, autocommit=True)
        self.enabled = self.connection.execute("SHOW autovacuum").fetchone()[0] == "off"
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Analyzer":
        if self.enabled:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for table in self.TABLES:
                self.connection.execute(f"ANALYZE {table}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
        self.connection.close()


# --- Celery messages ----------------------------------------------------------------------------------

class TaskEvents:
    """Counts the messages every publisher (the API, the workers, beat) sends, from the task-sent events
    Celery emits for each one (celeryconfig: task_send_sent_event = True), and the task-received events
    of the workers. Events are Redis pub/sub: only what arrives while the receiver listens is counted, so
    start() returns once the receiver has heard its own ping."""

    def __init__(self, app):
        self.app = app
        self.sent: Counter = Counter()  # (task name, routing key) → messages
        self.received: Counter = Counter()  # task name → messages a worker took
        self._ping = "bench-ping-" + secrets.token_hex(4)
        self._heard = threading.Event()
        self._receiver = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "task-sent":
            self.sent[(event.get("name"), event.get("routing_key") or event.get("queue"))] += 1
        elif kind == "task-received":
            self.received[event.get("name")] += 1
        elif kind == self._ping:
            self._heard.set()

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self._receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception as error:  # surfaced by start() / stop()
            self.error = error
            self._heard.set()

    def start(self, timeout: float = 20) -> "TaskEvents":
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self.app.events.default_dispatcher() as dispatcher:
            while not self._heard.wait(0.2):
                dispatcher.send(self._ping)
                if time.monotonic() > deadline:
                    raise RuntimeError("the Celery event receiver heard nothing (is the broker reachable?)")
        if self.error:
            raise RuntimeError(f"Celery event receiver failed: {self.error}")
        self.sent.clear()
        self.received.clear()
        return self

    def stop(self) -> dict:
        """{"sent": total, "by_task": {"name@routing key": n}, "received": {name: n}}."""
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)
        return {"sent": sum(self.sent.values()),
                "by_task": {f"{name}@{key}": n for (name, key), n in self.sent.most_common()},
                "received": dict(self.received.most_common())}


# --- what bench/probes.py recorded in the workers -----------------------------------------------------

TASK_KEY = "bench:task:"
PUBLISHED_KEY = "bench:published"


def task_stats(client, task_name: str) -> dict:
    """What the workers recorded for `task_name`: {"runs", "queries", "copies", "seconds",
    "per_run": {"mean", "max", "min"}} (queries + copies per run; zeros when it never ran)."""
    raw = {k.decode(): v.decode() for k, v in client.hgetall(TASK_KEY + task_name).items()}
    runs = [int(v) for v in client.lrange(TASK_KEY + task_name + ":runs", 0, -1)]
    return {"runs": int(raw.get("runs", 0)), "queries": int(raw.get("queries", 0)),
            "copies": int(raw.get("copies", 0)), "seconds": round(float(raw.get("seconds", 0)), 3),
            "per_run": {"mean": round(sum(runs) / len(runs), 1) if runs else 0, "max": max(runs, default=0),
                        "min": min(runs, default=0)}}


def tasks_recorded(client) -> list[str]:
    return sorted(k.decode()[len(TASK_KEY):] for k in client.scan_iter(TASK_KEY + "*") if not k.endswith(b":runs"))


def published(client) -> dict[str, int]:
    """Messages the workers published, "<task>@<routing key>" → n (before_task_publish)."""
    return {k.decode(): int(v) for k, v in client.hgetall(PUBLISHED_KEY).items()}


def probes_forget(client) -> None:
    keys = list(client.scan_iter(TASK_KEY + "*")) + [PUBLISHED_KEY]
    client.delete(*keys)


# --- the transactional path beside a long run ---------------------------------------------------------

class HighPriorityProbe:
    """Sends one high-priority notification every `interval` s from a thread until stop(), each carrying a
    bench reference, and times it from the POST to its arrival at the fake provider (latencies())."""

    def __init__(self, api_url: str, key: str, *, type_key: str, users: list[str], channels: list[str],
                 interval: float = 0.2):
        self.url = api_url + "/api/v1/notifications"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.type_key, self.users, self.channels, self.interval = type_key, users, channels, interval
        self.starts: dict[str, float] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "HighPriorityProbe":
        self._thread.start()
        return self

    def send_one(self, session) -> None:
        ref = secrets.token_hex(8)
        body = {"type": self.type_key, "priority": "high", "channels": self.channels,
                "recipients": [{"user_id": self.users[len(self.starts) % len(self.users)]}],
                "data": {"order_id": ref[:6], "bench_ref": "bref" + ref}}
        started = time.time()
        try:
            answer = session.post(self.url, json=body, headers=self.headers, timeout=10)
            if answer.status_code >= 300:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                return
        except requests.RequestException as error:
            self.failures.append(str(error)[:200])
            return
        self.starts[ref] = started

    def _run(self) -> None:
        with requests.Session() as session:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self.send_one(session)
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def latencies(self, arrivals: dict[str, float]) -> dict:
        """{"p50", "p95", "p99", …, "sent", "arrived", "missing", "failed"} in ms from `arrivals` (ref →
        first arrival at the fake)."""
        values = [(arrivals[ref] - at) * 1000 for ref, at in self.starts.items() if ref in arrivals]
        return {**percentiles(values), "sent": len(self.starts), "arrived": len(values),
                "missing": len(self.starts) - len(values), "failed": len(self.failures),
                "failures": self.failures[:3]}
