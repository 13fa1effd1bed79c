"""inbox: reads per second of the first page (20 items) plus the unread count, from an inbox table of
10,000,000 rows (100,000 users × 100 items, seeded once into notifier_bench_inbox and kept), through the
real API on granian as shipped; and django-notifications-hq on the same rows (the same users, items and
unread share, seeded once into notifier_bench_inbox_peer), served by the same granian setup and read by the
same load generator, from its own virtualenv on Django 5.0 (bench/peers/notifications_hq).
Skipped (not failed) while the inbox API is missing: the endpoint answers 404 for an existing user.

BENCH_INBOX_ROWS (and BENCH_INBOX_USERS, default rows / 100) make a smaller inbox for development, in
databases of their own; BENCH_INBOX_SECONDS shortens each measurement."""
import json
import os
import subprocess

import redis
import requests

from bench import ceilings, harness
from bench.harness import (BIN, INBOX_DATABASE_URL, INBOX_PEER_DATABASE_URL, INBOX_ROWS, ROOT, api_start,
                           base_env, database_create, database_ensure, loadgen, peer_venv, py_spy, py_spy_top)
from bench.report import row
from notifier.inbox_cache import GENERATIONS_KEY, user_key

ROWS = INBOX_ROWS
USERS = int(os.environ.get("BENCH_INBOX_USERS", str(max(1, ROWS // 100))))
TOKEN_USERS = 2_000  # users read in the run (bench/inbox_seed.py --token-users): the same ones for the peer
PATH = "/api/v1/users/{user}/notifications?limit=20"
PREFIX = "inbox-u"  # bench/inbox_seed.py's user ids
PEER = "django-notifications-hq"
PEER_PATH = "/inbox/{user}"
PEER_VENV = ROOT / ".venv-peer-notifications"
PEER_REQUIREMENTS = ROOT / "bench" / "peers" / "requirements-notifications-hq.txt"
FIGURE = "first page + unread count: reads/s"
P99 = "first page + unread count: p99"


def run(ctx) -> list[dict]:
    rows = []
    duration, clients = (3, 8) if ctx.smoke else (int(os.environ.get("BENCH_INBOX_SECONDS", "15")), 32)
    database_create(INBOX_DATABASE_URL)
    env = base_env(INBOX_DATABASE_URL)
    tokens_file = harness.LOGS / "inbox-recipient-tokens.json"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    seeded = subprocess.run([str(BIN / "python"), "-m", "bench.inbox_seed", "--rows", str(ROWS), "--users",
                             str(USERS), "--tokens-file", str(tokens_file), "--token-users", str(TOKEN_USERS)],
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
            http = ceilings.http("inbox", api, clients, duration, key="inbox_http_ceiling")
            generations = _cache_cold()
            profile = None if ctx.smoke else py_spy([api.pid], duration - 2, "inbox-api")
            reads = loadgen(api.url, key, get=PATH, duration=duration, concurrency=clients,
                            tokens_file=tokens_file)
            hottest = py_spy_top(profile) if profile else None
            setup = (f"{ROWS:,} inbox rows, {USERS:,} users, read with recipient tokens of "
                     f"{len(json.loads(tokens_file.read_text())):,} of them in rotation (a hot set: each is read "
                     f"again within a second); {api.description}, {clients} clients, {duration} s; probe answered "
                     f"{probe.status_code}; {_cache_conditions(generations, reads)}")
            rows.append(ceilings.against(row("inbox", FIGURE, reads["accepted_per_s"], "reads/s", ">=", 2000,
                                             key="inbox_reads", setup=setup, hottest=hottest, raw=reads), http, "HTTP"))
            rows.append(row("inbox", P99, reads["latency_ms"]["p99"], "ms", "<", 30,
                            key="inbox_p99", setup=f"p50 {reads['latency_ms']['p50']} ms", hottest=hottest))
            by_producer = loadgen(api.url, key, get=PATH, duration=duration, concurrency=clients, users=USERS,
                                  user_prefix="inbox-u")
            rows.append(ceilings.against(row(
                "inbox", "first page + unread count, read with a producer key: reads/s", by_producer["accepted_per_s"],
                "reads/s", None, None, key="inbox_reads_producer", raw=by_producer,
                setup=f"p50 {by_producer['latency_ms']['p50']} ms, p99 {by_producer['latency_ms']['p99']} ms"),
                http, "HTTP"))
            rows.append(http)
    finally:
        api.stop()
    rows += _peer(ctx, duration, clients)
    return rows


def _cache_cold() -> int:
    """Start the read cache cold (notifier/inbox_cache.py): every user's entry dropped, so that each user's
    first read in the run misses. Returns the generation counter, which counts those misses (a user with no
    entry is given a generation; nothing writes to the inbox during the run)."""
    client = redis.Redis.from_url(harness.REDIS_URL)
    names = [user_key(f"{PREFIX}{i}") for i in range(USERS)]
    for start in range(0, len(names), 10_000):
        client.delete(*names[start:start + 10_000])
    return int(client.get(GENERATIONS_KEY) or 0)


def _cache_conditions(generations: int, reads: dict) -> str:
    misses = int(redis.Redis.from_url(harness.REDIS_URL).get(GENERATIONS_KEY) or 0) - generations
    total = reads.get("requests") or 0
    ratio = (f"hit ratio at least {1 - misses / total:.1%}" if misses < total
             else "too few reads to warm it: mostly misses")
    return (f"read cache cold at the start: {misses:,} misses (each user's first read, some in the 1 s warm-up, "
            f"whose reads are not counted) against {total:,} measured reads: {ratio}")


def _peer(ctx, duration: int, clients: int) -> list[dict]:
    """django-notifications-hq on the same inbox: its own venv, database and seed, then the same load. A
    failure here is the peer's row's status; notifier's rows are kept."""
    if ctx.smoke:
        return [row("inbox", FIGURE, None, "reads/s", None, None, key="inbox_reads", system=PEER,
                    status="skipped: not in the smoke run")]
    try:
        peer_bin = peer_venv(PEER_VENV, PEER_REQUIREMENTS)
    except Exception as error:
        return [row("inbox", FIGURE, None, "reads/s", None, None, key="inbox_reads", system=PEER,
                    status=f"not runnable: {error}"[:300])]
    try:
        return _peer_measure(peer_bin, duration, clients)
    except Exception as error:
        return [row("inbox", FIGURE, None, "reads/s", None, None, key="inbox_reads", system=PEER,
                    status=f"failed: {error}"[:300])]


def _peer_measure(peer_bin, duration: int, clients: int) -> list[dict]:
    versions = subprocess.run(
        [str(peer_bin / "python"), "-c", "import django, importlib.metadata as m;"
         "print(django.get_version(), m.version('django-notifications-hq'))"],
        capture_output=True, text=True, timeout=60).stdout.split()
    database_ensure(INBOX_PEER_DATABASE_URL)
    env = base_env(INBOX_PEER_DATABASE_URL, DJANGO_SETTINGS_MODULE="bench.peers.notifications_hq.settings",
                   PATH=f"{peer_bin}:{os.environ.get('PATH', '')}")
    seeded = subprocess.run([str(peer_bin / "python"), "-m", "bench.peers.notifications_hq.seed", "--rows",
                             str(ROWS), "--users", str(USERS)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=3600)
    if seeded.returncode != 0:
        raise RuntimeError(f"seed: {(seeded.stderr.strip() or 'failed').splitlines()[-1]}")
    api = api_start(env, name="inbox-peer-api", wsgi="bench.peers.notifications_hq.wsgi", bin_dir=peer_bin)
    try:
        probe = requests.get(api.url + PEER_PATH.format(user="inbox-u0"), timeout=30)
        if probe.status_code != 200 or len(probe.json()["notifications"]) != min(20, ROWS // USERS):
            raise RuntimeError(f"probe answered {probe.status_code}: {probe.text[:200]}")
        profile = py_spy([api.pid], duration - 2, "inbox-peer-api")
        readers = min(USERS, TOKEN_USERS)
        reads = loadgen(api.url, "unused", get=PEER_PATH, duration=duration, concurrency=clients, users=readers,
                        user_prefix="inbox-u")
        hottest = py_spy_top(profile)
    finally:
        api.stop()
    django_version, library_version = (versions + ["?", "?"])[:2]
    setup = (f"django-notifications-hq {library_version} on Django {django_version} in its own venv (it does not "
             f"import on 5.1+, which removed Meta.index_together); {ROWS:,} notifications, {USERS:,} users, in its "
             f"own database with only its migrations' indexes; a plain Django view (bench/peers/notifications_hq/"
             f"views.py): the user by username from the URL (1 query, as session auth's user lookup; no token "
             f"check), user.notifications.all()[:20] serialized as its JSON views do minus actor/target (1 query "
             f"each), user.notifications.unread().count(); {readers:,} users read; {api.description}, "
             f"{clients} clients, {duration} s")
    return [
        row("inbox", FIGURE, reads["accepted_per_s"], "reads/s", None, None, key="inbox_reads", system=PEER,
            setup=setup, hottest=hottest, raw=reads),
        row("inbox", P99, reads["latency_ms"]["p99"], "ms", None, None, key="inbox_p99", system=PEER,
            setup=f"p50 {reads['latency_ms']['p50']} ms", hottest=hottest),
    ]
