"""Prometheus metrics: what notifier counts, and the /metrics view that exposes them.

Two kinds of figures:

- Counters and a histogram counted by the processes that do the work (the deliver step through the status
  machine's observer, the route step, the webhooks). With PROMETHEUS_MULTIPROC_DIR set, prometheus-client
  writes each process's values to files in that directory and /metrics adds up every process's files, so
  the API server's workers and Celery prefork children count as one service. Without it (a quick local run)
  each process counts for itself and /metrics shows the API process's own.
- Gauges read at scrape time from the rows and Redis (QueueCollector): dead letters, due rows per queue,
  circuit state per provider. The rows are the queue, so their count is the real backlog; a gauge kept by
  the workers would drift from it whenever a worker died.

Counts are made after commit: a batch rolled back and routed or recorded again counts once.
"""
from __future__ import annotations

import hmac
import logging
import os
import socket
from collections import Counter as Tally
from functools import partial

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Min
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily

from notifier.models import (
    NOTIFICATION_OPEN_STATUSES,
    Delivery,
    DeliveryStatus as S,
    EventSource,
    Notification,
)

log = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def process_identifier(pid: int | None = None) -> str:
    """Host and pid, the name of a process's files: processes of several containers sharing one directory
    (docker-compose) must not write each other's files, and container pids repeat. No "_": the collector
    splits file names on it."""
    return f"{socket.gethostname().replace('_', '-')}-{pid or os.getpid()}"


if os.environ.get(MULTIPROC_DIR_ENV):
    # Chosen before the first metric of this module is made; nothing else in our processes makes any.
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)

# Counted by the working processes. Not the default registry: ours holds only notifier's metrics.
PROCESS_METRICS = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "notifier_deliveries", "Deliveries that left the pipeline, by the status they left with (each once).",
    ["channel", "provider", "priority", "status"], registry=PROCESS_METRICS,
)
DELIVERY_REPORTS = Counter(
    "notifier_delivery_reports", "Later status changes of sent deliveries (delivered, opened, clicked, bounced, "
    "failed), by who reported them.", ["channel", "provider", "status", "source"], registry=PROCESS_METRICS,
)
# Up to 2 s in fine steps (the high-priority target), then minutes for quiet hours and long retries.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900, 3600)
DELIVERY_LATENCY = Histogram(
    "notifier_delivery_latency_seconds", "From accept (or the scheduled time) to the provider's answer that "
    "it took the message, for deliveries sent or delivered.", ["channel", "priority"], buckets=LATENCY_BUCKETS,
    registry=PROCESS_METRICS,
)
RETRIES = Counter(
    "notifier_delivery_retries", "Attempts that failed and went back to the queue for another.",
    ["channel", "provider"], registry=PROCESS_METRICS,
)
WEBHOOK_EVENTS = Counter(
    "notifier_webhook_events", "Events received on the provider webhooks, by source and what became of them.",
    ["source", "result"], registry=PROCESS_METRICS,
)
ROUTE_SUPPRESSED = Counter(
    "notifier_route_suppressed", "Notification × channel decisions suppressed at routing, by reason.",
    ["channel", "reason"], registry=PROCESS_METRICS,
)
RATE_LIMITED = Counter(
    "notifier_rate_limited", "Notification × channel decisions over a user's rate limit, by what was done.",
    ["channel", "action"], registry=PROCESS_METRICS,
)
CAMPAIGN_SHEDS = Counter(
    "notifier_campaign_sheds", "Times a campaign's fan-out held back a chunk because transactional deliveries "
    "were backed up (NOTIFIER_CAMPAIGN_SHED_BACKLOG).", registry=PROCESS_METRICS,
)
CAMPAIGN_CHUNKS = Counter(
    "notifier_campaign_chunks", "Campaign chunks routed, and the recipients in them.", ["unit"],
    registry=PROCESS_METRICS,
)

# The statuses a delivery waits or works in; leaving them is its outcome.
_IN_PIPELINE = frozenset({S.QUEUED, S.HELD, S.SENDING})
_SENT = frozenset({S.SENT, S.DELIVERED, S.OPENED, S.CLICKED})
# A send the channel deferred (an open circuit, the provider's send rate: notifier/channels/base.py) goes
# back to the queue without spending its attempt: not a retry. Its last_error is the deferral's message.
_DEFERRED_MARK = ": not sent, "


def _field(delivery: Delivery, name: str) -> str:
    """A loaded field's text, or "" for one the query left out (the observer never makes a query) or one
    a set-based move wrote as an SQL expression (the sweeper's last_error)."""
    value = delivery.__dict__.get(name)
    return value if isinstance(value, str) else ""


def status_changes_count(changes) -> None:
    """The status machine's observer (registered in apps.py): counts outcomes, retries, later reports
    and latency from the changes of one write, after its commit. No query; a few dict operations each."""
    deliveries, reports, retries, latencies = Tally(), Tally(), Tally(), []
    for change in changes:
        delivery = change.delivery
        channel, provider = _field(delivery, "channel"), _field(delivery, "provider")
        if change.previous in _IN_PIPELINE and change.status not in _IN_PIPELINE:
            deliveries[(channel, provider, _field(delivery, "priority"), change.status)] += 1
            if (change.previous == S.SENDING and change.status in (S.SENT, S.DELIVERED)
                    and Delivery.notification.is_cached(delivery)):
                accepted = delivery.notification.__dict__  # loaded fields only: a deferred one would query
                if accepted.get("created_at"):
                    start = max(accepted["created_at"], accepted.get("schedule_at") or accepted["created_at"])
                    latencies.append(((channel, _field(delivery, "priority")), (change.at - start).total_seconds()))
        elif change.previous in _SENT:
            reports[(channel, provider, change.status, change.source)] += 1
        elif (change.previous == S.SENDING and change.status == S.QUEUED and change.source == EventSource.WORKER
              and _DEFERRED_MARK not in _field(delivery, "last_error")):
            retries[(channel, provider)] += 1
    if deliveries or reports or retries or latencies:
        transaction.on_commit(partial(_changes_add, deliveries, reports, retries, latencies), robust=True)


def _changes_add(deliveries: Tally, reports: Tally, retries: Tally, latencies: list) -> None:
    for labels, n in deliveries.items():
        DELIVERIES.labels(*labels).inc(n)
    for labels, n in reports.items():
        DELIVERY_REPORTS.labels(*labels).inc(n)
    for labels, n in retries.items():
        RETRIES.labels(*labels).inc(n)
    for labels, seconds in latencies:
        DELIVERY_LATENCY.labels(*labels).observe(max(seconds, 0.0))


def webhook_event_count(source: str, result: str, n: int = 1) -> None:
    """Count `n` events from `source` ("sendgrid", "twilio", and the tracking endpoints "pixel", "click")
    that ended as `result` ("applied", "duplicate", "unknown_delivery", "ignored", "forged", "stale",
    "invalid", "failed"): a small fixed set, never free text."""
    transaction.on_commit(lambda: WEBHOOK_EVENTS.labels(source, result).inc(n), robust=True)


# What the route step says when it suppresses a channel (pipeline/preferences.py, the rate limits), as a
# small set of labels; the first prefix that matches wins.
SUPPRESSION_REASONS = (
    ("marketing not opted in", "marketing_not_opted_in"),
    ("type opted out", "type_opted_out"),
    ("category opted out", "category_opted_out"),
    ("channel disabled", "channel_disabled"),
    ("rate limited", "rate_limited"),
)


def suppression_reason(reason: str) -> str:
    for prefix, label in SUPPRESSION_REASONS:
        if reason.startswith(prefix):
            return label
    return "other"


def route_suppressed_count(channel: str, reason: str) -> None:
    """Count one notification × channel suppressed at routing; `reason` is the decision's text."""
    label = suppression_reason(reason)
    transaction.on_commit(lambda: ROUTE_SUPPRESSED.labels(channel, label).inc(), robust=True)


def rate_limited_count(channel: str, action: str) -> None:
    """Count one notification × channel over a rate limit; `action` is "suppressed" or "held"."""
    transaction.on_commit(lambda: RATE_LIMITED.labels(channel, action).inc(), robust=True)


def campaign_shed_count() -> None:
    CAMPAIGN_SHEDS.inc()


def campaign_chunk_count(recipients: int) -> None:
    """Count one routed chunk and its recipients, once its transaction commits."""
    def count():
        CAMPAIGN_CHUNKS.labels("chunks").inc()
        CAMPAIGN_CHUNKS.labels("recipients").inc(recipients)
    transaction.on_commit(count, robust=True)


class QueueCollector:
    """The gauges read at scrape time: dead letters per channel, due rows and the age of the oldest per
    queue, circuit state per provider. Three indexed queries under a statement timeout and one Redis round
    trip; a part that fails or times out is left out and says so in notifier_metrics_source_up."""

    def describe(self):
        return list(self._families().values())

    def _families(self):
        return {
            "dead": GaugeMetricFamily("notifier_dead_letters", "Dead deliveries not replayed, by channel.",
                                      labels=["channel"]),
            "due": GaugeMetricFamily("notifier_due_rows", "Rows due now and not taken yet, by queue: deliveries "
                                     "queued and due (<channel>.<priority>), notifications due for routing "
                                     "(route.<priority>).", labels=["queue"]),
            "oldest": GaugeMetricFamily("notifier_due_oldest_seconds", "How long the oldest due row of each "
                                        "queue has been due.", labels=["queue"]),
            "circuit": GaugeMetricFamily("notifier_circuit_state", "1 for each provider's current circuit state "
                                         "(closed, open, half-open, unknown), 0 for the others.",
                                         labels=["provider", "state"]),
            "up": GaugeMetricFamily("notifier_metrics_source_up", "1 when the scrape could read this source "
                                    "(database, redis), 0 when it failed or timed out.", labels=["source"]),
        }

    def collect(self):
        families = self._families()
        families["up"].add_metric(["database"], 1 if self._database(families) else 0)
        families["up"].add_metric(["redis"], 1 if self._circuits(families["circuit"]) else 0)
        return list(families.values())

    def _database(self, families) -> bool:
        now = timezone.now()
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":  # SQLite (a quick local run) has no statement timeout
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL statement_timeout = %s",
                                       [settings.NOTIFIER_METRICS_QUERY_TIMEOUT_MS])
                dead = list(Delivery.objects.filter(status=S.DEAD, replayed_as=None)
                            .values_list("channel").annotate(n=Count("id")).order_by())
                due = list(Delivery.objects.filter(status=S.QUEUED, next_attempt_at__lte=now)
                           .values_list("channel", "priority").annotate(n=Count("id"), oldest=Min("next_attempt_at"))
                           .order_by())
                routing = list(Notification.objects.filter(status__in=NOTIFICATION_OPEN_STATUSES, due_at__lte=now)
                               .values_list("priority").annotate(n=Count("id"), oldest=Min("due_at")).order_by())
        except DatabaseError as error:
            log.warning("metrics: the queue gauges were not read: %s", str(error).strip())
            return False
        for channel, n in dead:
            families["dead"].add_metric([channel], n)
        queues = [(f"{channel}.{priority}", n, oldest) for channel, priority, n, oldest in due]
        queues += [(f"route.{priority}", n, oldest) for priority, n, oldest in routing]
        for queue, n, oldest in sorted(queues):
            families["due"].add_metric([queue], n)
            families["oldest"].add_metric([queue], max((now - oldest).total_seconds(), 0.0))
        return True

    def _circuits(self, family) -> bool:
        from notifier.providers.circuit import circuit_states
        from notifier.providers.registry import configured_provider_names

        reachable = True
        for provider, text in circuit_states(configured_provider_names()).items():
            state = text.split(" ", 1)[0].rstrip(":")  # "open until …", "unknown: Redis unreachable (…)"
            reachable = reachable and state != "unknown"
            for name in ("closed", "open", "half-open", "unknown"):
                family.add_metric([provider, name], 1 if name == state else 0)
        return reachable


class _ProcessMetrics:
    """This process's own counters, for a run without a multiprocess directory."""

    def collect(self):
        return PROCESS_METRICS.collect()


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROC_DIR_ENV, "")


def scrape_registry() -> CollectorRegistry:
    """What one scrape reads: every process's counters (or this one's), and the queue gauges."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(QueueCollector())
    return registry


def metric_names() -> set[str]:
    """Every series name /metrics can show (counters with _total, histograms with _bucket/_sum/_count),
    for the check of the alert rules and the dashboard against what notifier exports."""
    names = set()
    for family in [*PROCESS_METRICS.collect(), *QueueCollector().describe()]:
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def process_exited(pid: int) -> None:
    """Tell prometheus-client a worker process ended (Celery's worker_process_shutdown), so live gauges drop
    its values: what its docs ask of every server. The API's server (granian) has no such hook, so the API
    keeps no live gauge (tests/metrics/test_metrics_multiprocess.py)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process_identifier(pid))


@require_http_methods(["GET", "HEAD"])
def metrics_view(request):
    """GET /metrics. With METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` reads it (401
    otherwise); without one it is off (404) unless NOTIFIER_METRICS_PUBLIC=1 opens it to anyone who
    reaches it (a private network, a local run)."""
    token = settings.METRICS_TOKEN
    if not token and not settings.NOTIFIER_METRICS_PUBLIC:
        raise Http404("metrics are off: set METRICS_TOKEN (or NOTIFIER_METRICS_PUBLIC=1)")
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("a valid Authorization: Bearer <METRICS_TOKEN> is required\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
