"""inbox: reads per second of the first page (20 items) plus the unread count, from an inbox table of
10,000,000 rows (100,000 users × 100 items, seeded once into notifier_bench_inbox and kept), through the
real API on gunicorn as shipped; and django-notifications-hq on the same rows, when it runs on Django 5.2.
Skipped (not failed) while the inbox API is missing: the endpoint answers 404 for an existing user."""
import json
import subprocess

import requests

from bench.harness import (BIN, INBOX_DATABASE_URL, LOGS, ROOT, api_start, base_env, database_create, loadgen, py_spy,
                           py_spy_top)
from bench.report import row

ROWS, USERS = 10_000_000, 100_000
PATH = "/api/v1/users/{user}/notifications?limit=20"
PEER = "django-notifications-hq"
FIGURE = "first page + unread count: reads/s"


def _peer_import_error() -> str | None:
    """Why django-notifications-hq cannot run here (its app registry load), or None when it can."""
    code = ("import django; from django.conf import settings; settings.configure(INSTALLED_APPS=["
            "'django.contrib.contenttypes','django.contrib.auth','notifications'], DATABASES={}); django.setup();"
            "from notifications.models import Notification")
    out = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        return None
    return out.stderr.strip().splitlines()[-1]


def run(ctx) -> list[dict]:
    rows = []
    duration, clients = (3, 8) if ctx.smoke else (15, 32)
    database_create(INBOX_DATABASE_URL)
    env = base_env(INBOX_DATABASE_URL)
    tokens_file = LOGS / "inbox-recipient-tokens.json"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    seeded = subprocess.run([str(BIN / "python"), "-m", "bench.inbox_seed", "--rows", str(ROWS), "--users",
                             str(USERS), "--tokens-file", str(tokens_file)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if seeded.returncode != 0:
        raise RuntimeError(f"inbox seed failed: {seeded.stderr.strip().splitlines()[-1]}")
    key = json.loads(seeded.stdout.strip().splitlines()[-1])["producer_key"]
    api = api_start(env, name="inbox-api")
    try:
        probe = requests.get(api.url + PATH.format(user="inbox-u0"), headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
        if probe.status_code == 404:
            rows.append(row("inbox", FIGURE, None, "reads/s", ">=", 2000, key="inbox_reads",
                            status="skipped: inbox API not available"))
        else:
            # An app reads its own inbox with a recipient token (no query to authenticate); a backend
            # reading for its users uses its producer key. The target is for the first.
            profile = None if ctx.smoke else py_spy([api.pid], duration - 2, "inbox-api")
            reads = loadgen(api.url, key, get=PATH, duration=duration, concurrency=clients,
                            tokens_file=tokens_file)
            hottest = py_spy_top(profile) if profile else None
            setup = (f"{ROWS:,} inbox rows, {USERS:,} users, read with recipient tokens of "
                     f"{len(json.loads(tokens_file.read_text())):,} of them; {api.description}, {clients} clients, "
                     f"{duration} s; probe answered {probe.status_code}")
            rows.append(row("inbox", FIGURE, reads["accepted_per_s"], "reads/s", ">=", 2000, key="inbox_reads",
                            setup=setup, hottest=hottest, raw=reads))
            rows.append(row("inbox", "first page + unread count: p99", reads["latency_ms"]["p99"], "ms", "<", 30,
                            key="inbox_p99", setup=f"p50 {reads['latency_ms']['p50']} ms", hottest=hottest))
            by_producer = loadgen(api.url, key, get=PATH, duration=duration, concurrency=clients, users=USERS,
                                  user_prefix="inbox-u")
            rows.append(row("inbox", "first page + unread count, read with a producer key: reads/s",
                            by_producer["accepted_per_s"], "reads/s", None, None, key="inbox_reads_producer",
                            setup=f"p50 {by_producer['latency_ms']['p50']} ms, p99 {by_producer['latency_ms']['p99']} ms",
                            raw=by_producer))
    finally:
        api.stop()
    problem = _peer_import_error()
    if problem:
        rows.append(row("inbox", FIGURE, None, "reads/s", None, None, key="inbox_reads", system=PEER,
                        status=f"not runnable on Django 5.2: {problem}"[:300]))
    else:
        rows.append(row("inbox", FIGURE, None, "reads/s", None, None, key="inbox_reads", system=PEER,
                        status="imports on Django 5.2, but its read path is not wired into the bench yet"))
    return rows
