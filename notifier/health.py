"""GET /livez: the process answers (liveness), a constant JSON with no database or Redis work.

GET /healthz: is the database reachable, is the broker reachable. 200 when both are, 503 naming the one
that is down otherwise. It also names each configured provider's circuit ("providers": {"sendgrid":
"closed", "smtp": "open until 2026-12-02T03:04:05Z"}), one Redis round trip within the same budget: an
open circuit is an outage of someone else's service, handled (notifier/providers/circuit.py), so it does
not make notifier unhealthy.

It answers within its request's Redis budget (NOTIFIER_REDIS_TIMEOUT_SECONDS) even when the broker accepts
connections but never answers: a Redis broker is asked PING through the shared client (its deadline and
breaker, notifier/redis_client.py), not through kombu, whose Redis transport waits its own, longer socket
timeout (celeryconfig.broker_transport_options). Other brokers (RabbitMQ) are checked through kombu.
"""
from django.db import connection
from django.http import JsonResponse

from notifier.providers.circuit import circuit_states
from notifier.providers.registry import configured_provider_names
from notifier.redis_client import redis_client_for
from notifier_project.celery import app


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as error:
        return f"down: {error}"


def _broker() -> str:
    url = app.conf.broker_url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            redis_client_for(url).ping()
        else:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as error:
        return f"down: {error}"


def healthz(request):
    checks = {"database": _database(), "broker": _broker()}
    healthy = all(value == "ok" for value in checks.values())
    providers = circuit_states(configured_provider_names())
    return JsonResponse({"status": "ok" if healthy else "down", "checks": checks, "providers": providers},
                        status=200 if healthy else 503)


def livez(request):
    """The process is up and its request cycle works: nothing is read or written, so a database or broker
    outage does not make an orchestrator restart a healthy process (that is /healthz's question). It goes
    through every middleware like any page, which also makes it the bench's HTTP ceiling (bench/ceilings.py)."""
    return JsonResponse({"status": "ok"})
