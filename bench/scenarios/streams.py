"""streams: BENCH_STREAMS (10,000) live inbox streams open at once on one stream server (notifier/streams,
uvicorn as the Procfile ships it), beside granian as the Procfile ships it. Measured: the stream server's
resident memory idle and with every stream open, its Redis connections, the time from a PUBLISH (as the
pipeline publishes a new item) to the frame's arrival at its stream (p50/p99 over BENCH_STREAMS_SAMPLE
publishes to distinct streams, once idle and once under ingest load), and single-recipient ingest through
granian without the streams and with them open. The client is one asyncio process (bench/stream_load.py).

Also writes bench/streams.md, the scenario's own section of BENCHMARKS.md."""
import json
import os
import subprocess
import time

import redis

from bench import ceilings, harness
from bench.harness import (BIN, LOGS, REDIS_URL, ROOT, api_start, base_env, cpu_seconds, data_reset, loadgen, rss_mib,
                           streams_start)
from bench.report import row

STREAMS = int(os.environ.get("BENCH_STREAMS", "10000"))
SAMPLE = int(os.environ.get("BENCH_STREAMS_SAMPLE", "1000"))
SAMPLE_RATE = 100  # publishes a second, each to another stream
SECTION = ROOT / "bench" / "streams.md"


def run(ctx) -> list[dict]:
    from notifier.api.auth import recipient_token_issue
    from notifier.models import Recipient
    from notifier.streams.hub import CLIENT_NAME

    streams = 200 if ctx.smoke else STREAMS
    sample = 50 if ctx.smoke else SAMPLE
    duration, clients = (3, 8) if ctx.smoke else (15, 32)
    data_reset()
    from bench import seed

    seed.users(streams)
    ids = dict(Recipient.objects.filter(user_id__startswith=seed.USER_PREFIX).values_list("user_id", "id"))
    users = [f"{seed.USER_PREFIX}{i}" for i in range(streams)]
    tokens_file = LOGS / "stream-tokens.json"
    tokens_file.write_text(json.dumps([[user_id, recipient_token_issue(user_id, ids[user_id])] for user_id in users]))
    # Streams outlive the run (it takes minutes), so none ends and reconnects while it is measured.
    env = base_env(NOTIFIER_INBOX_STREAM_SECONDS=3600)
    api = api_start(env)
    server = streams_start(env)
    client = redis.Redis.from_url(REDIS_URL)
    load = None
    try:
        idle_rss = rss_mib(server)
        http = ceilings.http("streams", api, clients, duration, key="streams_http_ceiling")
        without = loadgen(api.url, ctx.key, duration=duration, concurrency=clients, users=ctx.users)
        load = subprocess.Popen([str(BIN / "python"), "-m", "bench.stream_load", "--url", server.url, "--tokens-file",
                                 str(tokens_file), "--redis-url", REDIS_URL], cwd=ROOT, env=base_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(LOGS / "stream-load.log", "w"),
                                text=True, start_new_session=True)
        opened = _answer(load)
        time.sleep(2)  # let the server settle after the last connect
        open_rss = rss_mib(server)
        # What the open streams cost in CPU while nothing happens: heartbeats, Redis PINGs.
        quiet = _cpu_share(lambda: time.sleep(duration), server.pid, load.pid)
        hub_connections = [c for c in client.client_list() if c.get("name") == CLIENT_NAME]
        idle_sample = _command(load, f"sample {sample} {SAMPLE_RATE}")
        # The second sample runs while the load generator posts notifications: fan-out beside ingest.
        load.stdin.write(f"sample {sample} {SAMPLE_RATE}\n")
        load.stdin.flush()
        busy = {}
        busy_cpu = _cpu_share(lambda: busy.update(loadgen(api.url, ctx.key, duration=duration, concurrency=clients,
                                                          users=ctx.users)), server.pid, load.pid)
        with_streams = busy
        busy_sample = _answer(load)
        status = _command(load, "status")
        after_rss = rss_mib(server)
    finally:
        if load is not None and load.poll() is None:
            try:
                load.stdin.write("stop\n")
                load.stdin.flush()
                load.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                load.kill()
        server.stop()
        api.stop()
    data_reset()

    per_stream_kib = (open_rss - idle_rss) * 1024 / max(1, opened["opened"])
    ingest_ratio = 100 * with_streams["accepted_per_s"] / without["accepted_per_s"] if without["accepted_per_s"] else None
    setup = (f"{server.description} (the Procfile's `stream`), one process; {api.description}; the client: one "
             f"asyncio process (bench/stream_load.py) on the same machine")
    rows = [
        row("streams", "live inbox streams open at once", opened["opened"], "streams", ">=", streams,
            key="streams_open", setup=f"{setup}; opened in {opened['seconds']} s, {opened['failed']} failed "
                                      f"{opened['errors'] or ''}; still open at the end: {status['open']}"),
        row("streams", "stream server memory (RSS) with them open", open_rss, "MiB", "<", 1024,
            key="streams_rss", setup=f"{idle_rss} MiB idle, {after_rss} MiB after the samples and ingest; "
                                     f"{per_stream_kib:.1f} KiB a stream"),
        row("streams", "stream server's Redis connections", len(hub_connections), "connections", "<=", 1,
            key="streams_redis_connections", setup=f"CLIENT LIST name={CLIENT_NAME}; subscribed channels: "
                                                   f"{', '.join(c.get('sub', '?') for c in hub_connections)}"),
        row("streams", "stream server CPU with them open and quiet", quiet[0], "% of a core", None, None,
            key="streams_cpu_quiet", setup=f"over {duration} s of heartbeats alone; the client process used "
                                           f"{quiet[1]}% of a core meanwhile"),
        row("streams", "stream server CPU with them open, during ingest", busy_cpu[0], "% of a core", None, None,
            key="streams_cpu_busy", setup=f"the client process (which reads every heartbeat and sample, and "
                                          f"would be the browsers' elsewhere) used {busy_cpu[1]}% of a core"),
        row("streams", "publish → arrival p50", idle_sample["p50_ms"], "ms", None, None, key="streams_p50",
            setup=f"{idle_sample['received']}/{idle_sample['published']} received, {SAMPLE_RATE}/s to distinct "
                  f"streams; each item is written at once, its badge (re-read from PostgreSQL) after it"),
        row("streams", "publish → arrival p99", idle_sample["p99_ms"], "ms", "<", 1000, key="streams_p99",
            setup=f"max {idle_sample['max_ms']} ms"),
        row("streams", "publish → arrival p99 during ingest", busy_sample["p99_ms"], "ms", "<", 1000,
            key="streams_p99_busy", setup=f"p50 {busy_sample['p50_ms']} ms, max {busy_sample['max_ms']} ms, "
                                          f"{busy_sample['received']}/{busy_sample['published']} received"),
        ceilings.against(row("streams", "single-recipient POSTs accepted/s, no streams open", without["accepted_per_s"],
                             "req/s", None, None, key="streams_ingest_without", raw=without,
                             setup=f"{clients} clients, {duration} s; p99 {without['latency_ms']['p99']} ms"),
                         http, "HTTP"),
        ceilings.against(row("streams", f"single-recipient POSTs accepted/s, {opened['opened']:,} streams open",
                             with_streams["accepted_per_s"], "req/s", None, None, key="streams_ingest_with",
                             raw=with_streams,
                             setup=f"{clients} clients, {duration} s; p99 {with_streams['latency_ms']['p99']} ms"),
                         http, "HTTP"),
        row("streams", "ingest with the streams open, of ingest without", round(ingest_ratio, 1) if ingest_ratio else None,
            "%", ">=", 90, key="streams_ingest_ratio"),
        http,
    ]
    if not ctx.smoke:
        SECTION.write_text(_section(rows, harness.machine_facts()))
    return rows


def _cpu_share(work, *pids) -> list[float]:
    """Run `work`; each process's CPU use meanwhile, in % of one core."""
    before, started = [cpu_seconds([pid]) for pid in pids], time.monotonic()
    work()
    elapsed = time.monotonic() - started
    return [round(100 * (cpu_seconds([pid]) - b) / elapsed, 1) for pid, b in zip(pids, before)]


def _answer(load) -> dict:
    line = load.stdout.readline()
    if not line:
        raise RuntimeError(f"the stream client died: {(LOGS / 'stream-load.log').read_text()[-2000:]}")
    return json.loads(line)


def _command(load, command: str) -> dict:
    load.stdin.write(command + "\n")
    load.stdin.flush()
    return _answer(load)


def _section(rows: list[dict], facts: dict) -> str:
    lines = [
        "## Live inbox streams (make bench SCENARIO=streams)",
        "",
        f"`make bench SCENARIO=streams` (BENCH_STREAMS={STREAMS}, BENCH_STREAMS_SAMPLE={SAMPLE}) at git commit "
        f"{facts['git_commit']}, {facts['date']}, {facts['cores']} cores, load average at start "
        f"{facts['load_average_at_start']}. Target (issue 14): 10,000 open streams on one API box, under 1 GiB for "
        "them, ingest unchanged while they are open, each new item at its stream in under a second.",
        "",
        "| figure | measured | target | conditions |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        target = f"{r['op']} {harness.fmt(r['goal'], r['unit'])}" if r["op"] else ""
        lines.append(f"| {r['figure']} | {harness.fmt(r['value'], r['unit'])} | {target} | {r['setup']} |")
    return "\n".join(lines) + "\n"
