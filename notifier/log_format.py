"""Log lines as JSON (LOG_FORMAT=json), and the context a delivery's log lines carry.

Log calls keep their `%s` messages and add the ids as `extra=delivery_log_context(delivery)`; the plain
format shows the message, the JSON format the message and each of those keys. Loaded by the logging
configuration before the apps: no model imports here.
"""
from __future__ import annotations

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# The keys a delivery's log line carries in JSON, where the call knows them.
CONTEXT_KEYS = ("notification_id", "delivery_id", "channel", "provider", "attempt", "producer")


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, then whatever the call passed in `extra`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)


def delivery_log_context(delivery) -> dict:
    """The `extra` of a log line about one delivery. Reads only what is loaded (never a query): the
    producer when the delivery's notification came with it."""
    loaded = delivery.__dict__
    context = {
        "notification_id": str(loaded.get("notification_id") or ""),
        "delivery_id": loaded.get("id"),
        "channel": loaded.get("channel", ""),
        "provider": loaded.get("provider", ""),
        "attempt": loaded.get("attempts"),
    }
    notification = getattr(delivery, "_state").fields_cache.get("notification")
    if notification is not None:
        context["producer"] = notification.__dict__.get("producer_id")
    return context
