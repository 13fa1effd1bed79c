"""A DELIBERATELY NAIVE notification service, kept only as a benchmark baseline. Do not copy it.

It is how a first Celery design usually looks, and everything docs/architecture.md's "Throughput rules"
forbids: one task per recipient per channel, one query per preference, `.save()` per row, and a new provider
connection (a new SDK client) per message. It uses notifier's tables and provider adapters, so both designs
run on the same data against the same fake servers, and only the design differs.

    granian --interface wsgi bench.naive.wsgi:application      the API: POST /api/v1/notifications
    celery -A bench.naive.celery_app worker -Q naive            the workers
"""
