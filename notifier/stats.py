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

from django.db import connection

# Each line is a column of every group's row; they read only Delivery's own columns.
_COUNTS = """
    count(*) AS deliveries,
    count(d.sent_at) AS sent,
    count(d.delivered_at) AS delivered,
    count(d.opened_at) AS opened,
    count(d.clicked_at) AS clicked,
    count(CASE WHEN d.status IN ('failed', 'dead') THEN 1 END) AS failed,
    count(CASE WHEN d.status = 'bounced' THEN 1 END) AS bounced"""
# One sort per group gives the three percentiles; percentile_cont skips the nulls of unsent deliveries.
_LATENCY_POSTGRESQL = """,
    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
        ORDER BY extract(epoch FROM d.sent_at - d.notification_due_at) * 1000) AS latency_ms"""
_LATENCY_OTHER = ",\n    NULL AS latency_ms"
COUNT_NAMES = ("deliveries", "sent", "delivered", "opened", "clicked", "failed", "bounced")
PERCENTILES = ("p50", "p95", "p99")


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


def _grouped_sql(where: str, params: list) -> tuple[str, list]:
    """The total row, one row per channel and one per type id: `all_channels` / `all_types` are 1 in the
    rows that are not grouped by it (SQL's GROUPING())."""
    if connection.vendor == "postgresql":
        # One scan of the window for the three groupings.
        sql = f"""
            SELECT GROUPING(d.channel) AS all_channels, GROUPING(d.type_id) AS all_types, d.channel, d.type_id,
                   {_COUNTS}{_LATENCY_POSTGRESQL}
            FROM notifier_delivery d WHERE {where}
            GROUP BY GROUPING SETS ((), (d.channel), (d.type_id))"""
        return sql, params
    # No GROUPING SETS (SQLite): the same rows from three scans of the window.
    parts = [
        ("1 AS all_channels, 1 AS all_types, NULL AS channel, NULL AS type_id", ""),
        ("0, 1, d.channel, NULL", "GROUP BY d.channel"),
        ("1, 0, NULL, d.type_id", "GROUP BY d.type_id"),
    ]
    sql = " UNION ALL ".join(f"SELECT {keys}, {_COUNTS}{_LATENCY_OTHER} FROM notifier_delivery d WHERE {where} {group}"
                             for keys, group in parts)
    return sql, params * len(parts)


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
    grouped, params = _grouped_sql(where, params)
    # The type keys join the aggregated rows, a few dozen, not the deliveries.
    sql = f"""
        SELECT g.*, t.key AS type_key FROM ({grouped}) g
        LEFT JOIN notifier_notificationtype t ON t.id = g.type_id"""
    return sql, params


def delivery_stats(stats_filter: StatsFilter) -> dict:
    """{"totals": figures, "by_channel": [{"channel", **figures}], "by_type": [{"type": key, **figures}]}
    for the deliveries the filter selects; channels and types without deliveries in it are not listed,
    and the totals of an empty window are zeros. One query."""
    sql, params = stats_query(stats_filter)
    with connection.cursor() as cursor:
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
