"""campaign: one marketing campaign to 100,000 and to 1,000,000 users (BENCH_CAMPAIGN_SIZES), each with email
(SendGrid fake) and in-app, timed from `POST /api/v1/campaigns` to the last delivery (the last request at
the fake, the last inbox row); and one to 100,000 users with one Android device each (BENCH_CAMPAIGN_PUSH)
beside django-push-notifications sending the same through `send_message` on the same FCM fake.

Each run starts its own stack (granian as the Procfile ships it, one Celery worker per group of
celeryconfig.WORKER_GROUPS as `make run` starts them, beat) on emptied notification tables and Redis db,
warms it with a 100-user campaign, then measures:
- total time and deliveries/s;
- Celery messages published, from the task-sent events of every publisher (bench/measure.py TaskEvents),
  per chunk of the campaign (CampaignChunk rows);
- queries per chunk: statements each run of the chunk task sent to PostgreSQL, recorded in the workers by
  bench/probes.py (`--include bench.probes`; the chunk task is the task whose name contains "chunk", or
  BENCH_CAMPAIGN_CHUNK_TASK);
- peak RSS of every worker process (main and pool children, /proc, every 0.5 s) and its growth from the
  POST to the end;
- high-priority p99: a transactional SMS (bench_order, priority high) every BENCH_CAMPAIGN_PROBE_INTERVAL
  s (0.2) through the run, from its POST to its arrival at the Twilio fake, which nothing else uses;
- and checks the fakes: every recipient got exactly one email (or push) and one inbox item, nobody else
  got one, and the campaign's counters say so. Any difference fails the scenario (its rows are kept).

Users are seeded once with COPY and kept (bench/campaign_seed.py); the first run of 1,000,000 seeds for
about half a minute. Skipped while POST /api/v1/campaigns answers 404.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

import psycopg
import redis
import requests

from bench import campaign_seed, ceilings, measure
from bench.campaign_seed import PREFIX, TYPE_KEY, WARM_SIZE, WARM_TOPIC, topic
from bench.harness import (DATABASE_URL, REDIS_URL, api_start, base_env, beat_start, data_reset, fmt,
                           worker_groups_start)
from bench.report import row
from bench.tokens import campaign_push_token

SIZES = [int(s) for s in os.environ.get("BENCH_CAMPAIGN_SIZES", "100000,1000000").replace("_", "").split(",") if s]
PUSH = int(os.environ.get("BENCH_CAMPAIGN_PUSH", "100000").replace("_", "") or 0)
PROBE_INTERVAL = float(os.environ.get("BENCH_CAMPAIGN_PROBE_INTERVAL", "0.2"))
CHUNK_TASK = os.environ.get("BENCH_CAMPAIGN_CHUNK_TASK", "")
STALL_SECONDS = float(os.environ.get("BENCH_CAMPAIGN_STALL_SECONDS", "90"))
# How long a run may take at most, in seconds per 1,000 recipients (20 s: 50 recipients/s, 200× under the
# target), at least 10 minutes: the bench is there to say how long it took, not to give up on a slow run
# (a trial on the unmerged code did 130 recipients/s × email + in-app). A run that stops moving ends after
# STALL_SECONDS.
TIMEOUT_PER_THOUSAND = float(os.environ.get("BENCH_CAMPAIGN_TIMEOUT_PER_THOUSAND", "20"))
SETTLE_SECONDS = 5  # after the last expected delivery: long enough for a duplicate to show up
PEER = "django-push-notifications"
EMAIL_CHANNELS = ["email", "in_app"]


class ScenarioFailed(RuntimeError):
    """The scenario measured but found something wrong: bench/run.py keeps `rows` and fails the run."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows


def run(ctx) -> list[dict]:
    from notifier.models import Producer
    from notifier.models.producers import SCOPES, scopes_ordered

    data_reset()
    seeded = campaign_seed.setup(SIZES, PUSH)
    print(f"  campaign seed: {seeded}", flush=True)
    Producer.objects.filter(name="bench").update(scopes=scopes_ordered(SCOPES))  # whatever scope campaigns need
    rows, problems = [], []
    runs = [(size, EMAIL_CHANNELS) for size in SIZES] + ([(PUSH, ["push"])] if PUSH else [])
    for size, channels in runs:
        result = measure_run(ctx, size, channels)
        if result.get("skipped"):
            return [row("campaign", "campaign to a segment", None, "", None, None, key="campaign_skipped",
                        status=f"skipped: {result['skipped']}")]
        result["seed"] = seeded
        rows += (push_rows if channels == ["push"] else email_rows)(result)
        problems += [f"{size:,} × {'+'.join(channels)}: {p}" for p in result["problems"]]
    if SIZES:
        # What the SendGrid fake takes as the campaign sends it: 1,000 a request, one per campaign worker process.
        rows.append(ceilings.provider("campaign", ctx.fakes, "sendgrid", 5, key="campaign_sendgrid_ceiling",
                                      concurrency=3, batch=1000))
    if PUSH:
        fcm = ceilings.provider("campaign", ctx.fakes, "fcm", 5, key="campaign_fcm_ceiling")
        for r in rows:
            if r["key"] == "campaign_push":  # a device is one FCM request
                ceilings.against(r, fcm, "fake fcm")
        rows += [peer_row(ctx, PUSH), fcm]
    if problems:
        raise ScenarioFailed("; ".join(problems)[:1500], rows)
    return rows


@contextmanager
def campaign_stack(fakes):
    """granian, every worker group with the bench's probes, beat; stopped in reverse order."""
    env = base_env(**fakes.env())
    started = []
    try:
        api = api_start(env)
        started.append(api)
        workers = worker_groups_start(env, include="bench.probes")
        started += workers
        started.append(beat_start(env))
        yield api, workers
    finally:
        for process in reversed(started):
            process.stop()


def measure_run(ctx, size: int, channels: list[str]) -> dict:
    from notifier_project.celery import app

    data_reset()
    client = redis.Redis.from_url(REDIS_URL)
    with campaign_stack(ctx.fakes) as (api, workers):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {ctx.key}"
        warm = campaign_post(session, api.url, WARM_TOPIC, channels, name="bench warm-up")
        if warm.status_code == 404:
            return {"skipped": "POST /api/v1/campaigns answered 404 (the campaign API is not merged)"}
        if warm.status_code != 202:
            raise RuntimeError(f"warm-up campaign: {warm.status_code} {warm.text[:300]}")
        # The probes go to the bench's 10,000 transactional users in turn: each gets at most one in
        # 10,000 / 5 s (33 min), under the default 5 SMS an hour per user (NOTIFIER_RATE_LIMITS).
        probe_users = [f"bench-u{i}" for i in range(ctx.users)]
        probe = measure.HighPriorityProbe(api.url, ctx.key, type_key="bench_order", channels=["sms"],
                                          users=probe_users)
        with requests.Session() as probe_session:
            probe.send_one(probe_session)
        warmed = wait_delivered(ctx, warm.json()["id"], WARM_SIZE, channels, inbox_baseline=0, timeout=120,
                                stall=30)
        if warmed["ended"] != "all delivered":
            raise RuntimeError(f"warm-up campaign of {WARM_SIZE}: {warmed['counts']} delivered, {warmed['ended']}; "
                               f"{warmup_reasons(warm.json()['id'])}")
        time.sleep(1)
        ctx.fakes.reset()
        measure.probes_forget(client)
        inbox_baseline = inbox_count()
        events = measure.TaskEvents(app).start()
        sampler = measure.RssSampler({p.name: p.pid for p in workers}).start()
        analyzer = measure.Analyzer(DATABASE_URL).start()
        probe = measure.HighPriorityProbe(api.url, ctx.key, type_key="bench_order", channels=["sms"],
                                          users=probe_users[1:], interval=PROBE_INTERVAL).start()
        started = time.time()
        answer = campaign_post(session, api.url, topic(size), channels, name=f"bench {size}")
        accepted_s = time.time() - started
        try:
            if answer.status_code != 202:
                raise RuntimeError(f"POST /api/v1/campaigns answered {answer.status_code}: {answer.text[:300]}")
            campaign_id = answer.json()["id"]
            progress = wait_delivered(ctx, campaign_id, size, channels, inbox_baseline,
                                      timeout=max(600.0, size / 1000 * TIMEOUT_PER_THOUSAND))
        finally:
            probe.stop()
            analyzer.stop()
        time.sleep(SETTLE_SECONDS)
        status = campaign_wait_final(session, api.url, campaign_id, timeout=60)
        rss = sampler.stop()
        messages = events.stop()
        groups = [{"group": p.group, "queues": p.queues, "concurrency": p.concurrency, "note": p.note}
                  for p in workers]
    result = {"size": size, "channels": channels, "started": started, "accepted_s": round(accepted_s, 3),
              "campaign_id": campaign_id, "progress": progress, "status": status, "rss": rss,
              "messages": messages, "published_by_workers": measure.published(client), "groups": groups,
              "analyzed": analyzer.enabled,
              "chunks": chunks_of(campaign_id), "queries": chunk_queries(client)}
    result["delivered"] = delivered_counts(ctx, campaign_id, size, channels)
    result["high_priority"] = probe.latencies(ctx.fakes.arrivals()["twilio"])
    last = [v["last_at"] for v in result["delivered"].values() if v.get("last_at")]
    result["seconds"] = round(max(last) - started, 2) if last else None
    result["problems"] = problems_of(size, channels, result["delivered"], status, result["high_priority"])
    return result


def campaign_post(session, url: str, segment_topic: str, channels: list[str], name: str):
    body = {"name": name, "type": TYPE_KEY, "data": {"offer": "20%"}, "segment": {"topic": segment_topic},
            "channels": channels}
    return session.post(url + "/api/v1/campaigns", json=body, timeout=120)


def inbox_count() -> int:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute("SELECT count(*) FROM notifier_inboxitem").fetchone()[0]


def wait_delivered(ctx, campaign_id: str, size: int, channels: list[str], inbox_baseline: int,
                   timeout: float, stall: float = STALL_SECONDS) -> dict:
    """Poll until every channel has `size` messages (the fakes' message counts, the inbox's rows), nothing
    moved for `stall` s, or `timeout` passed. Returns the counts seen last and how it ended."""
    deadline, last, last_change = time.monotonic() + timeout, None, time.monotonic()
    while True:
        counts = {}
        if "email" in channels:
            counts["email"] = ctx.fakes.summary("sendgrid")["messages"]
        if "push" in channels:
            counts["push"] = ctx.fakes.summary("fcm")["messages"]
        if "in_app" in channels:
            counts["in_app"] = inbox_count() - inbox_baseline
        now = time.monotonic()
        if all(n >= size for n in counts.values()):
            return {"counts": counts, "ended": "all delivered"}
        if counts != last:
            last, last_change = counts, now
        if now - last_change > stall:
            return {"counts": counts, "ended": f"nothing moved for {stall:.0f} s"}
        if now > deadline:
            return {"counts": counts, "ended": f"timed out after {timeout:.0f} s"}
        time.sleep(1.0 if "in_app" not in channels else 2.0)


def campaign_wait_final(session, url: str, campaign_id: str, timeout: float) -> dict:
    """GET /api/v1/campaigns/{id} until its status is completed (or cancelled), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        answer = session.get(f"{url}/api/v1/campaigns/{campaign_id}", timeout=60)
        body = answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else {}
        if answer.status_code != 200:
            return {"http_status": answer.status_code, "body": answer.text[:300]}
        if body.get("status") in ("completed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(1)


def warmup_reasons(campaign_id: str) -> str:
    """Why a campaign's messages did not go: its routing decisions and delivery outcomes other than
    success, most frequent first (a template the render step refuses, a provider answering 401…)."""
    with psycopg.connect(DATABASE_URL) as conn:
        decisions = conn.execute(
            "SELECT d->>'channel', d->>'decision', d->>'reason', count(*) FROM notifier_notification n, "
            "jsonb_array_elements(n.decisions) d WHERE n.campaign_id = %s AND d->>'decision' <> 'queued' "
            "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 3", (campaign_id,)).fetchall()
        deliveries = conn.execute(
            "SELECT channel, status, left(last_error, 200), count(*) FROM notifier_delivery WHERE campaign_id = %s "
            "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 5", (campaign_id,)).fetchall()
    return f"decisions not queued: {decisions}; deliveries: {deliveries}"


def chunks_of(campaign_id: str) -> int:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute("SELECT count(*) FROM notifier_campaignchunk WHERE campaign_id = %s",
                            (campaign_id,)).fetchone()[0]


def chunk_queries(client) -> dict:
    """What bench/probes.py recorded for the chunk task (and every other task, by name)."""
    names = measure.tasks_recorded(client)
    chunk = CHUNK_TASK or next((n for n in names if "chunk" in n), "")
    return {"chunk_task": chunk, "chunk": measure.task_stats(client, chunk) if chunk else None,
            "tasks": {n: measure.task_stats(client, n) for n in names}}


def delivered_counts(ctx, campaign_id: str, size: int, channels: list[str]) -> dict:
    """Per channel: messages, distinct recipients, duplicates, missing and unexpected recipients, last
    arrival, from the fakes' ledgers (every personalization of a batch counts) and the inbox table."""
    found = {}
    for channel, provider, expected_of in (("email", "sendgrid", campaign_seed.email),
                                           ("push", "fcm", campaign_push_token)):
        if channel not in channels:
            continue
        prefix = PREFIX if channel == "email" else "bench-cpush-"
        got = ctx.fakes.targets(provider, prefix, listed=True)
        counts = got.pop("counts")
        expected = {expected_of(i) for i in range(size)}
        found[channel] = {"messages": got["targets"], "distinct": got["distinct"], "duplicated": got["duplicated"],
                          "examples": got["examples"], "missing": len(expected - counts.keys()),
                          "unexpected": len(counts.keys() - expected), "requests": got["requests"],
                          "last_at": got["last_at"]}
    if "in_app" in channels:
        with psycopg.connect(DATABASE_URL) as conn:
            messages, distinct, outside, last_at = conn.execute(
                "SELECT count(*), count(DISTINCT i.recipient_id), count(*) FILTER (WHERE NOT EXISTS ("
                "  SELECT 1 FROM notifier_recipienttopic t WHERE t.recipient_id = i.recipient_id AND t.topic = %s)),"
                " extract(epoch FROM max(i.created_at)) "
                "FROM notifier_inboxitem i JOIN notifier_notification n ON n.id = i.notification_id "
                "WHERE n.campaign_id = %s", (topic(size), campaign_id)).fetchone()
        found["in_app"] = {"messages": messages, "distinct": distinct, "duplicated": messages - distinct,
                           "missing": size - (distinct - outside), "unexpected": outside,
                           "last_at": float(last_at) if last_at is not None else None}
    return found


def problems_of(size: int, channels: list[str], delivered: dict, status: dict, high_priority: dict) -> list[str]:
    """What is wrong, in words: each recipient gets exactly one message per channel, nobody else gets one,
    the campaign completes and its counters agree, every high-priority probe arrives."""
    problems = []
    for channel in channels:
        got = delivered.get(channel, {})
        if got.get("messages") != size or got.get("distinct") != size or got.get("missing") or got.get("unexpected"):
            problems.append(f"{channel}: {got.get('messages')} messages to {got.get('distinct')} recipients, "
                            f"{got.get('missing')} missing, {got.get('unexpected')} not in the segment, "
                            f"{got.get('duplicated')} duplicated (e.g. {got.get('examples', [])[:3]}); expected "
                            f"{size} to {size}")
    if status.get("status") != "completed":
        problems.append(f"campaign status {status.get('status')!r}, not 'completed' "
                        f"({status.get('http_status', 200)} {str(status.get('body', ''))[:100]})")
    counters = status.get("counters", status)
    expected = {"targeted": size, "sent": size * len(channels)}
    for name, value in expected.items():
        if counters.get(name) != value:
            problems.append(f"counter {name} = {counters.get(name)!r}, expected {value}")
    eligible = counters.get("eligible")
    if isinstance(eligible, dict):
        for channel in channels:
            if eligible.get(channel) != size:
                problems.append(f"counter eligible.{channel} = {eligible.get(channel)!r}, expected {size}")
    if high_priority["missing"] or high_priority["failed"]:
        problems.append(f"high-priority probes: {high_priority['missing']} of {high_priority['sent']} never "
                        f"arrived, {high_priority['failed']} refused ({high_priority['failures'][:1]})")
    return problems


def messages_per_chunk(result: dict) -> tuple[int, dict]:
    """The campaign's Celery messages (every task-sent but the high-priority probes' *.high messages and
    beat's periodic tasks, which run whatever the campaign) and the rest, by task@routing key."""
    import celeryconfig

    periodic = {entry["task"] for entry in celeryconfig.beat_schedule.values()}
    ours, other = 0, {}
    for key, n in result["messages"]["by_task"].items():
        name, _, routing_key = key.rpartition("@")
        if routing_key.endswith(".high") or name in periodic:
            other[key] = n
        else:
            ours += n
    return ours, other


def _common(result: dict) -> dict:
    size, channels = result["size"], result["channels"]
    deliveries = size * len(channels)
    seconds = result["seconds"]
    ours, other = messages_per_chunk(result)
    chunks = result["chunks"]
    rss = result["rss"]
    hp = result["high_priority"]
    groups = ", ".join(f"{g['group']} ×{g['concurrency']}" + (f" ({g['note']})" if g["note"] else "")
                       for g in result["groups"])
    checked = "; ".join(f"{c}: {d['messages']:,} messages to {d['distinct']:,} recipients"
                        + (f" in {d['requests']:,} requests" if "requests" in d else "")
                        + f", {d['missing']:,} missing, {d['duplicated']:,} duplicated, {d['unexpected']:,} outside "
                          "the segment"
                        for c, d in result["delivered"].items())
    return {"size": size, "deliveries": deliveries, "seconds": seconds, "ours": ours, "other": other,
            "chunks": chunks, "rss": rss, "hp": hp, "groups": groups, "checked": checked,
            "rate": round(deliveries / seconds, 1) if seconds and not result["problems"] else None}


def email_rows(result: dict) -> list[dict]:
    c = _common(result)
    size = c["size"]
    label = f"{size:,} recipients × email + in-app"
    key = f"campaign_{size}"
    status = "measured"
    run_setup = (f"segment {{topic}} of {size:,} users opted in to marketing; POST answered in "
                 f"{result['accepted_s']} s; {c['chunks']:,} chunks; ended: {result['progress']['ended']}; "
                 f"campaign {result['status'].get('status')!r}; checked at the fakes: {c['checked']}; "
                 f"workers: {c['groups']}"
                 + ("; PostgreSQL runs with autovacuum off here: the bench ANALYZEs the growing tables every 15 s, "
                    "as autovacuum would" if result.get("analyzed") else ""))
    rows = [
        row("campaign", f"{label}: POST → last delivery", c["seconds"], "s", "<=" if size >= 1_000_000 else None,
            200 if size >= 1_000_000 else None, key=key + "_seconds", setup=run_setup, raw=result, status=status),
        row("campaign", f"{label}: deliveries/s", c["rate"], "deliveries/s", ">=", 10_000, key=key + "_rate",
            setup=f"{c['deliveries']:,} deliveries (email + in-app) in {fmt(c['seconds'], 's')}"
                  + ("" if c["rate"] else f"; not counted: {'; '.join(result['problems'])[:300]}")),
        *shared_rows(result, c, label, key),
    ]
    return rows


def shared_rows(result: dict, c: dict, label: str, key: str) -> list[dict]:
    per_chunk = round(c["ours"] / c["chunks"], 2) if c["chunks"] else None
    queries = result["queries"]
    chunk = queries.get("chunk")
    rss, hp = c["rss"], c["hp"]
    by_task = ", ".join(f"{k} {n:,}" for k, n in result["messages"]["by_task"].items())
    rows = [
        row("campaign", f"{label}: Celery messages per chunk", per_chunk, "messages", "<=", 2, key=key + "_messages",
            setup=f"{c['ours']:,} messages for {c['chunks']:,} chunks, counted from task-sent events of every "
                  f"publisher ({result['messages']['sent']:,} in all; not counted: the high-priority probes' and "
                  f"beat's periodic tasks); by task@queue: {by_task}; the workers' own count of what they "
                  f"published (before_task_publish, bench/probes.py): {sum(result['published_by_workers'].values()):,}, "
                  f"the rest came from the API and beat"),
    ]
    if chunk and chunk["runs"]:
        rows.append(row("campaign", f"{label}: queries per chunk (max)", chunk["per_run"]["max"], "queries", None,
                        None, key=key + "_queries",
                        setup=f"{queries['chunk_task']}: {chunk['runs']:,} runs, mean {chunk['per_run']['mean']}, "
                              f"min {chunk['per_run']['min']} statements (Django execute calls {chunk['queries']:,}, "
                              f"COPY {chunk['copies']:,} in all), {chunk['seconds'] / chunk['runs'] * 1000:.0f} ms "
                              f"per run; counted in the workers by bench/probes.py"))
    else:
        rows.append(row("campaign", f"{label}: queries per chunk (max)", None, "queries", None, None,
                        key=key + "_queries", status="not measured: no task named *chunk* ran "
                        f"(tasks seen: {', '.join(queries['tasks']) or 'none'})"[:300]))
    peaks = ", ".join(f"{p['name']} {p['peak']:.0f}" for p in sorted(rss["processes"], key=lambda p: -p["peak"])[:8])
    rows += [
        row("campaign", f"{label}: peak worker RSS", rss["peak_mb"], "MB", None, None, key=key + "_rss",
            setup=f"highest of {len(rss['processes'])} worker processes (main and pool children, /proc every "
                  f"0.5 s): {peaks} MB"),
        row("campaign", f"{label}: worker RSS growth, POST → end", abs(rss["growth_mb"]) if rss["growth_mb"] is not None
            else None, "MB", "<=", 50, key=key + "_rss_growth",
            setup=f"largest change of one process: {rss.get('growth_of')} {rss['growth_mb']:+.1f} MB"
            if rss["growth_mb"] is not None else ""),
        row("campaign", f"{label}: high-priority POST → provider p99 during the run", hp["p99"], "ms", "<", 1000,
            key=key + "_hp_p99",
            setup=f"{hp['sent']} transactional SMS (priority high), one every {PROBE_INTERVAL} s from the campaign's "
                  f"POST to its last delivery, to the Twilio fake (which the campaign does not use); p50 "
                  f"{hp['p50']} ms, p95 {hp['p95']} ms, max {hp['max']} ms; {hp['missing']} never arrived"
                  + ("; fewer than 50: a short run" if hp["sent"] < 50 else "")),
    ]
    return rows


def push_rows(result: dict) -> list[dict]:
    c = _common(result)
    size = c["size"]
    label = f"{size:,} recipients × push (one Android device)"
    key = "campaign_push"
    rows = [
        row("campaign", f"{label}: devices/s", c["rate"], "devices/s", None, None, key=key,
            setup=f"POST /api/v1/campaigns → the last FCM request at the fake in {fmt(c['seconds'], 's')}; "
                  f"{c['chunks']:,} chunks; checked at the fake: {c['checked']}; workers: {c['groups']}", raw=result),
    ]
    return rows + shared_rows(result, c, label, key)


def peer_row(ctx, size: int) -> dict:
    from bench.scenarios.push import peer_send

    label = f"{size:,} recipients × push (one Android device): devices/s"
    try:
        theirs = peer_send(ctx, size, 1, prefix="cpush-u")
    except Exception as error:
        return row("campaign", label, None, "devices/s", None, None, key="campaign_push", system=PEER,
                   status=f"not runnable: {error}"[:300])
    return row("campaign", label, round(size / theirs["seconds"], 1), "devices/s", None, None, key="campaign_push",
               system=PEER, setup=f"GCMDevice.objects.filter(user__username__startswith='cpush-u').send_message(…) "
                                  f"returned after {theirs['seconds']} s; {theirs['success']:,} sent, "
                                  f"{theirs['failure']:,} failed, {theirs['arrived']:,} arrived at the same FCM fake; "
                                  "FCM_MAX_RECIPIENTS 500", raw=theirs)
