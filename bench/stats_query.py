"""Time GET /api/v1/stats's query (notifier/stats.py, delivery_stats) on 10,000,000 deliveries: `make bench-stats`.

Fills a database of its own (notifier_stats_bench, BENCH_STATS_DATABASE_URL; created, migrated, and dropped
at the end unless --keep) with --deliveries deliveries, two per notification, spread evenly over the last 30
days, from 3 producers (60 / 30 / 10 % of the traffic) and 8 notification types on 4 channels, with a
realistic mix of statuses and an exponential latency tail. The rows are generated inside PostgreSQL
(INSERT … SELECT generate_series, the bulk path of bench/inbox_seed.py), then VACUUM ANALYZEd.

Then it times delivery_stats for a 24 h and a 30 d window, for every producer (an admin key), for one
producer (what a `send` key reads), and filtered by channel and type: the first run of each ("cold-ish":
the table is far larger than shared_buffers and the previous case read other pages; the OS cache is not
dropped, which needs root) and the median of 5 runs after it (warm). It also times the same query written
with a join to notifications (no copied columns) to show what the copies buy.

Writes bench/stats_query.md (the section BENCHMARKS.md shows; bench/report.py appends it on every render)
and puts it into BENCHMARKS.md now.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench import harness

# Another --deliveries count gets a database of its own (notifier_stats_bench_20000, …): a small trial run
# never drops a kept 10,000,000-row seed.
URL = os.environ.get("BENCH_STATS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifier_stats_bench")
SECTION = harness.ROOT / "bench" / "stats_query.md"
HEADING = "## Stats query (make bench-stats)"
TYPES = 8
PRODUCERS = ("stats-a", "stats-b", "stats-c")  # 60, 30 and 10 % of the notifications
USERS = 10_000
WARM_RUNS = 5
SPAN_SECONDS = 30 * 24 * 3600


def _setup_django() -> None:
    os.environ.update(harness.base_env(URL))
    os.environ["DATABASE_URL"] = URL
    sys.path.insert(0, str(harness.ROOT))
    import django

    django.setup()


def _drop(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(deliveries: int, chunk_notifications: int = 500_000) -> dict:
    """The producers, types and users through the ORM; notifications and deliveries in SQL. Returns ids."""
    from django.db import connection
    from django.utils import timezone

    from bench.inbox_seed import _select_list
    from notifier.models import Delivery, Notification, NotificationType, Producer, Recipient

    producers = [Producer.create_with_key(name, ["send"])[0].id for name in PRODUCERS]
    types = [NotificationType.objects.create(key=f"stats_type_{i}", default_channels=["push"]).id
             for i in range(TYPES)]
    Recipient.objects.bulk_create([Recipient(user_id=f"stats-u{i}") for i in range(USERS)], batch_size=5_000)
    first_user = Recipient.objects.order_by("id").values_list("id", flat=True).first()
    notifications = deliveries // 2
    step = SPAN_SECONDS / notifications  # notification g is due g × step seconds before the seed began
    anchor = timezone.now().isoformat()
    due = f"('{anchor}'::timestamptz - g * {step} * interval '1 second')"
    # mod(), not %: the statements carry %s parameters (_select_list's defaults).
    producer = (f"(CASE WHEN mod(g, 10) < 6 THEN {producers[0]} WHEN mod(g, 10) < 9 THEN {producers[1]} "
                f"ELSE {producers[2]} END)")
    type_id = f"(ARRAY{types})[1 + mod(g, {TYPES})]"
    priority = "(ARRAY['high', 'medium', 'low'])[1 + mod(g, 3)]"
    n_cols, n_vals, n_params = _select_list(Notification, {
        "id": "md5('s' || g)::uuid", "producer_id": producer, "type_id": type_id,
        "recipient_id": f"{first_user} + mod(g, {USERS})", "data": "'{}'::jsonb", "channels": "'[]'::jsonb",
        "priority": priority, "status": "'delivered'", "decisions": "'[]'::jsonb", "due_at": due,
        "created_at": due, "routed_at": due,
    })
    # Per delivery: r picks the outcome, q how far along the success path, l the latency.
    #   2 % failed, 1 % dead, 1 % bounced (after sending), 3 % suppressed (never sent), 93 % sent, of which
    #   10 % stay sent, 68 % delivered, 16 % opened, 6 % clicked. Latency: 30 ms + exponential (mean 200 ms),
    #   and 5 s more for 1 % (a provider's slow minute).
    status = ("(CASE WHEN r < 0.02 THEN 'failed' WHEN r < 0.03 THEN 'dead' WHEN r < 0.04 THEN 'bounced' "
              "WHEN r < 0.07 THEN 'suppressed' WHEN q < 0.10 THEN 'sent' WHEN q < 0.78 THEN 'delivered' "
              "WHEN q < 0.94 THEN 'opened' ELSE 'clicked' END)")
    sent = f"(r >= 0.07 OR (r >= 0.03 AND r < 0.04))"
    sent_at = (f"{due} + (30 + 200 * -ln(1 - l) + CASE WHEN l > 0.99 THEN 5000 ELSE 0 END) "
               f"* interval '1 millisecond'")
    d_cols, d_vals, d_params = _select_list(Delivery, {
        "notification_id": "md5('s' || g)::uuid", "notification_due_at": due, "producer_id": producer,
        "type_id": type_id, "channel": "(ARRAY['push', 'email', 'sms', 'in_app'])[1 + mod(g / 8 + 2 * i, 4)]",
        "priority": priority, "target": "'t' || g", "content": "'{}'::jsonb", "status": status,
        "attempts": "1", "next_attempt_at": due, "created_at": f"{due} + interval '5 milliseconds'",
        "provider": "'fake'",
        "sent_at": f"CASE WHEN {sent} THEN {sent_at} END",
        "failed_at": f"CASE WHEN r < 0.04 THEN {due} + interval '2 seconds' END",
        "delivered_at": f"CASE WHEN r >= 0.07 AND q >= 0.10 THEN {sent_at} + interval '1 second' END",
        "opened_at": f"CASE WHEN r >= 0.07 AND q >= 0.78 THEN {sent_at} + interval '60 seconds' END",
        "clicked_at": f"CASE WHEN r >= 0.07 AND q >= 0.94 THEN {sent_at} + interval '90 seconds' END",
    })
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")  # this session's index builds only
        # This session's inserts skip the foreign-key triggers (one lookup per key per row): the rows
        # reference the producers, types, users and notifications made just before, by construction.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SELECT setseed(0.42)")
        # Built once after the load instead of row by row during it (random uuids make that slow); the
        # tables end with the same indexes. Constraint indexes (primary keys, unique constraints) stay.
        indexes = [*_indexes_drop(cursor, "notifier_notification"), *_indexes_drop(cursor, "notifier_delivery")]
        for start in range(0, notifications, chunk_notifications):
            end = min(notifications, start + chunk_notifications) - 1
            cursor.execute(f"INSERT INTO notifier_notification ({n_cols}) SELECT {n_vals} "
                           f"FROM generate_series({start}, {end}) AS g", n_params)
            cursor.execute(f"INSERT INTO notifier_delivery ({d_cols}) SELECT {d_vals} FROM "
                           f"(SELECT g, i, random() AS r, random() AS q, random() AS l "
                           f"FROM generate_series({start}, {end}) AS g, generate_series(0, 1) AS i) AS rows", d_params)
            print(f"stats bench: {2 * (end + 1):,} deliveries, {time.monotonic() - started:.0f} s", flush=True)
        for definition in indexes:
            cursor.execute(definition)
        print(f"stats bench: {len(indexes)} indexes built, {time.monotonic() - started:.0f} s", flush=True)
    connection.close()
    import psycopg

    with psycopg.connect(URL, autocommit=True) as conn:  # VACUUM cannot run in a transaction
        conn.execute("VACUUM ANALYZE notifier_notification")
        conn.execute("VACUUM ANALYZE notifier_delivery")
        seconds = round(time.monotonic() - started)
        # Kept with the data, for the section a --keep run writes later.
        conn.execute(f"COMMENT ON TABLE notifier_delivery IS 'seeded in {seconds} s'")
    print(f"stats bench: seeded and analyzed in {seconds} s", flush=True)
    return {"producers": producers, "types": types, "seed_seconds": seconds}


def _indexes_drop(cursor, table: str) -> list[str]:
    """Drop the table's indexes that back no constraint; return their CREATE INDEX statements."""
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND NOT EXISTS ("
                   "SELECT 1 FROM pg_constraint WHERE conindid = quote_ident(indexname)::regclass)", [table])
    rows = cursor.fetchall()
    for name, _ in rows:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in rows]


def _join_variant(sql: str) -> str:
    """The same query reading the window, producer and type from notifications: what it would cost
    without Delivery's copies of them."""
    sql = sql.replace("FROM notifier_delivery d WHERE",
                      "FROM notifier_delivery d JOIN notifier_notification n ON n.id = d.notification_id WHERE")
    for copy, original in (("d.notification_due_at", "n.due_at"), ("d.producer_id", "n.producer_id"),
                           ("d.type_id", "n.type_id")):
        sql = sql.replace(copy, original)
    return sql


def _scan(cursor, sql, params) -> str:
    """How the plan reads deliveries and notifications (the type table's scan is left out)."""
    cursor.execute("EXPLAIN " + sql, params)
    steps = []
    for (line,) in cursor.fetchall():
        found = re.search(r"((?:Parallel )?Seq Scan|Bitmap Heap Scan|Bitmap Index Scan|Index Only Scan|Index Scan)"
                          r"(?: using (\w+))? on (\w+)", line)
        if found and "notificationtype" not in line:
            kind, index, relation = found.groups()
            steps.append(f"{kind} on {index or relation}" if kind.startswith("Index") else f"{kind} on {relation}")
        elif join := re.search(r"Hash Join|Merge Join|Nested Loop", line):
            steps.append(join.group())
    return ", ".join(dict.fromkeys(steps))


def time_cases(ids: dict) -> list[dict]:
    from django.db import connection
    from django.utils import timezone

    from notifier.stats import StatsFilter, delivery_stats, stats_query

    now = timezone.now()
    a, c = ids["producers"][0], ids["producers"][2]
    cases = []
    for window, span in (("24 h", timedelta(hours=24)), ("30 d", timedelta(days=30))):
        since = now - span
        for label, fields in (("every producer (admin key)", {}),
                              ("one producer, 60 % of traffic", {"producer_id": a}),
                              ("one producer, 10 % of traffic", {"producer_id": c}),
                              ("one producer, channel=email, type=stats_type_3",
                               {"producer_id": a, "channel": "email", "type_id": ids["types"][3]})):
            cases.append((window, label, StatsFilter(since=since, until=now, **fields), False))
        cases.append((window, "every producer, joined to notifications (not used)", StatsFilter(since, now), True))
    results = []
    with connection.cursor() as cursor:
        for window, label, stats_filter, join in cases:
            sql, params = stats_query(stats_filter)
            if join:
                sql = _join_variant(sql)
            runs, result = [], None
            for _ in range(1 + WARM_RUNS):
                started = time.perf_counter()
                if join:
                    cursor.execute(sql, params)
                    cursor.fetchall()
                else:
                    result = delivery_stats(stats_filter)
                runs.append((time.perf_counter() - started) * 1000)
            row = {"window": window, "case": label, "first_ms": runs[0], "warm_ms": statistics.median(runs[1:]),
                   "plan": _scan(cursor, sql, params),
                   "deliveries": result["totals"]["deliveries"] if result else None}
            print(f"stats bench: {window} {label}: first {row['first_ms']:.0f} ms, warm {row['warm_ms']:.0f} ms, "
                  f"{row['plan']}", flush=True)
            results.append(row)
    return results


def sizes() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_table_size('notifier_delivery')), "
                       "pg_size_pretty(pg_relation_size('delivery_due_at')), "
                       "pg_size_pretty(pg_indexes_size('notifier_delivery')), (SELECT count(*) FROM notifier_delivery)")
        table, index, indexes, count = cursor.fetchone()
    return {"table": table, "index": index, "indexes": indexes, "count": count}


def section(results: list[dict], size: dict, facts: dict, seed_seconds, command: str) -> str:
    from notifier.stats import STATS_WORK_MEM

    lines = [
        HEADING, "",
        f"Written by `{command}` (bench/stats_query.py) on {facts['date']}, git commit {facts['git_commit']}, "
        f"PostgreSQL {facts['postgresql']}, {facts['cores']} cores shared with other work (load average at "
        f"start {facts['load_average_at_start']}); server settings untouched (shared_buffers 128 MB, work_mem "
        f"4 MB; the query sets work_mem {STATS_WORK_MEM} for its own transaction).",
        "",
        f"{size['count']:,} deliveries (two per notification) over the last 30 days, 3 producers (60 / 30 / 10 %), "
        f"8 types, 4 channels; seeded in {seed_seconds} s (indexes built after the load, then VACUUM ANALYZE). Delivery table {size['table']}; the stats index "
        f"`delivery_due_at` (B-tree on notification_due_at) {size['index']}; all of the table's indexes "
        f"{size['indexes']}. Times are of `delivery_stats()` (the endpoint's one query, with its Python "
        "around it), first run and median of the 5 after it.",
        "",
        "| window | deliveries read | case | first run | warm (median of 5) | plan |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        read = f"{row['deliveries']:,}" if row["deliveries"] is not None else "same as every producer"
        lines.append(f"| {row['window']} | {read} | {row['case']} | {harness.fmt(row['first_ms'], 'ms')} | "
                     f"{harness.fmt(row['warm_ms'], 'ms')} | {row['plan']} |")
    return "\n".join(lines) + "\n"


def benchmarks_update(text: str) -> None:
    """Replace (or add) the section in BENCHMARKS.md now; bench/report.py appends bench/stats_query.md on
    every later render, so `make bench` keeps it."""
    path = harness.ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    start = current.find(HEADING)
    if start >= 0:
        following = current.find("\n## ", start + len(HEADING))
        current = current[:start].rstrip() + "\n" + (current[following:] if following >= 0 else "")
    path.write_text(current.rstrip() + "\n\n" + text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it next time)")
    args = parser.parse_args(argv)
    global URL
    if args.deliveries != 10_000_000 and "BENCH_STATS_DATABASE_URL" not in os.environ:
        URL = f"{URL}_{args.deliveries}"
    command = "make bench-stats" if args.deliveries == 10_000_000 else \
        f"python -m bench.stats_query --deliveries {args.deliveries}"
    fresh = True
    if args.keep:
        import psycopg

        server, name = URL.rsplit("/", 1)
        with psycopg.connect(server + "/postgres") as conn:
            fresh = not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if fresh:
        _drop(URL)
        harness.database_create(URL)
    harness.DATABASE_URL = URL  # machine_facts asks it the server's version
    facts = harness.machine_facts()
    _setup_django()
    try:
        if fresh:
            ids = seed(args.deliveries)
        else:
            from notifier.models import NotificationType, Producer

            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT obj_description('notifier_delivery'::regclass, 'pg_class')")
                comment = cursor.fetchone()[0] or ""
            ids = {"producers": [Producer.objects.get(name=name).id for name in PRODUCERS],
                   "types": [NotificationType.objects.get(key=f"stats_type_{i}").id for i in range(TYPES)],
                   "seed_seconds": comment.removeprefix("seeded in ").removesuffix(" s") + " (an earlier run; --keep)"}
        results = time_cases(ids)
        text = section(results, sizes(), facts, ids["seed_seconds"], command)
    finally:
        from django.db import connection

        connection.close()
        if not args.keep:
            _drop(URL)
    if args.deliveries == 10_000_000:
        SECTION.write_text(text)
        benchmarks_update(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
