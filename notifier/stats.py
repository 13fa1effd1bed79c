"""Delivery figures over a window, for GET /api/v1/stats: counts, rates and accept → provider latency, in
total, per channel and per notification type, in one SQL query over one table.

Definitions (README, "Stats"):
- the window selects deliveries by `Delivery.notification_due_at`: when their notification was accepted,
  or came due if it was scheduled; since ≤ due < until;
- deliveries: every row in the window, whatever its status (held, suppressed, cancelled … included);
- sent: the provider accepted it (`sent_at` set); delivered, opened, clicked: the first time it reached
  each (`delivered_at`, `opened_at`, `clicked_at`, set by pipeline/status.py), so a delivery that was
  delivered and later bounced counts in both; failed: status failed (a permanent error) or dead (retries
  exhausted); bounced: status bounced;
- delivery_rate = delivered / sent, open_rate = opened / delivered, click_rate = clicked / delivered;
  null when the denominator is 0. Push and SMTP email have no delivery receipt: they count as delivered
  only when the app, the pixel or a click says so;
- latency_ms: percentiles (p50, p95, p99, continuous: PostgreSQL's percentile_cont) of sent_at −
  notification_due_at over the sent deliveries. It includes every wait on the way: quiet-hour holds,
  retries, rate limits, an escalation's delay. On SQLite (the embedded default for a quick local run),
  which has no percentile aggregate, the percentiles are null; the counts and rates are the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

# The window's deliveries, narrowed to what the figures need: a 1 (or NULL) per count, so the rows the
# grouping sorts are a few bytes wide instead of every timestamp (a 10,000,000-row window is sorted twice).
_WINDOW = """
    SELECT d.channel{collate} AS channel, d.type_id,
           CASE WHEN d.sent_at IS NOT NULL THEN 1 END AS sent,
           CASE WHEN d.delivered_at IS NOT NULL THEN 1 END AS delivered,
           CASE WHEN d.opened_at IS NOT NULL THEN 1 END AS opened,
           CASE WHEN d.clicked_at IS NOT NULL THEN 1 END AS clicked,
           CASE WHEN d.status IN ('failed', 'dead') THEN 1 END AS failed,
           CASE WHEN d.status = 'bounced' THEN 1 END AS bounced{latency}
    FROM notifier_delivery d WHERE {where}"""
# EXTRACT gives numeric since PostgreSQL 14: float8 sorts far faster, and percentile_cont takes it.
_LATENCY_POSTGRESQL = ",\n           (extract(epoch FROM d.sent_at - d.notification_due_at) * 1000)::float8 AS latency_ms"
_COUNTS = """count(*) AS deliveries, count(w.sent) AS sent, count(w.delivered) AS delivered,
           count(w.opened) AS opened, count(w.clicked) AS clicked, count(w.failed) AS failed,
           count(w.bounced) AS bounced"""
COUNT_NAMES = ("deliveries", "sent", "delivered", "opened", "clicked", "failed", "bounced")
PERCENTILES = ("p50", "p95", "p99")
# The percentiles sort every sent delivery's latency, per group: with PostgreSQL's default work_mem (4 MB)
# a 30-day window's sorts spill to disk. Raised for this one transaction only.
STATS_WORK_MEM = "256MB"


@dataclass(frozen=True)
class StatsFilter:
    """The window and the optional filters. producer_id None: every producer's deliveries (an admin key)."""

    since: datetime
    until: datetime
    producer_id: int | None = None
    channel: str | None = None
    type_id: int | None = None
    priority: str | None = None


def _where(stats_filter: StatsFilter) -> tuple[str, list]:
    adapt = connection.ops.adapt_datetimefield_value
    clauses = ["d.notification_due_at >= %s", "d.notification_due_at < %s"]
    params = [adapt(stats_filter.since), adapt(stats_filter.until)]
    for column, value in (("producer_id", stats_filter.producer_id), ("channel", stats_filter.channel),
                          ("type_id", stats_filter.type_id), ("priority", stats_filter.priority)):
        if value is not None:
            clauses.append(f"d.{column} = %s")
            params.append(value)
    return " AND ".join(clauses), params


def _grouped_sql(where: str) -> str:
    """The total row, one row per channel and one per type id: `all_channels` / `all_types` are 1 in the
    rows that are not grouped by it (SQL's GROUPING())."""
    if connection.vendor == "postgresql":
        # One scan of the window for the three groupings. COLLATE "C": the grouping sorts compare bytes.
        # One sort per group gives the three percentiles; percentile_cont skips unsent deliveries' NULLs.
        window = _WINDOW.format(collate=' COLLATE "C"', latency=_LATENCY_POSTGRESQL, where=where)
        return f"""
            WITH w AS ({window})
            SELECT GROUPING(w.channel) AS all_channels, GROUPING(w.type_id) AS all_types, w.channel, w.type_id,
                   {_COUNTS},
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY w.latency_ms) AS latency_ms
            FROM w GROUP BY GROUPING SETS ((), (w.channel), (w.type_id))"""
    # No GROUPING SETS and no percentile aggregate (SQLite): the same rows from three scans of the window.
    window = _WINDOW.format(collate="", latency="", where=where)
    return f"""
        WITH w AS ({window})
        SELECT 1 AS all_channels, 1 AS all_types, NULL AS channel, NULL AS type_id, {_COUNTS}, NULL AS latency_ms
        FROM w
        UNION ALL SELECT 0, 1, w.channel, NULL, {_COUNTS}, NULL FROM w GROUP BY w.channel
        UNION ALL SELECT 1, 0, NULL, w.type_id, {_COUNTS}, NULL FROM w GROUP BY w.type_id"""


def _figures(row: dict) -> dict:
    counts = {name: row[name] for name in COUNT_NAMES}

    def rate(numerator, denominator):
        return round(counts[numerator] / counts[denominator], 4) if counts[denominator] else None

    latency = row["latency_ms"]
    return {
        **counts,
        "delivery_rate": rate("delivered", "sent"),
        "open_rate": rate("opened", "delivered"),
        "click_rate": rate("clicked", "delivered"),
        "latency_ms": {name: (round(value, 1) if value is not None else None)
                       for name, value in zip(PERCENTILES, latency or (None,) * len(PERCENTILES))},
    }


def stats_query(stats_filter: StatsFilter) -> tuple[str, list]:
    """The one query of delivery_stats, and its parameters (bench/stats_query.py explains it)."""
    where, params = _where(stats_filter)
    grouped = _grouped_sql(where)
    # The type keys join the aggregated rows, a few dozen, not the deliveries.
    sql = f"""
        SELECT g.*, t.key AS type_key FROM ({grouped}) g
        LEFT JOIN notifier_notificationtype t ON t.id = g.type_id"""
    return sql, params


def delivery_stats(stats_filter: StatsFilter) -> dict:
    """{"totals": figures, "by_channel": [{"channel", **figures}], "by_type": [{"type": key, **figures}]}
    for the deliveries the filter selects; channels and types without deliveries in it are not listed,
    and the totals of an empty window are zeros. One query (on PostgreSQL after a SET LOCAL work_mem)."""
    sql, params = stats_query(stats_filter)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL work_mem = '{STATS_WORK_MEM}'")
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    totals, by_channel, by_type = None, [], []
    for row in rows:
        if row["all_channels"] and row["all_types"]:
            totals = _figures(row)
        elif not row["all_channels"]:
            by_channel.append({"channel": row["channel"], **_figures(row)})
        else:
            by_type.append({"type": row["type_key"], **_figures(row)})
    return {
        "totals": totals,
        "by_channel": sorted(by_channel, key=lambda group: group["channel"]),
        "by_type": sorted(by_type, key=lambda group: group["type"]),
    }
