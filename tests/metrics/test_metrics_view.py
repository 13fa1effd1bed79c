"""GET /metrics: guarded by METRICS_TOKEN (or off), Prometheus's text format, the queue gauges read from
the rows and Redis at scrape time."""
import time
from datetime import timedelta

import psycopg

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from notifier.models import Delivery, DeliveryStatus as S
from notifier.pipeline.route import route_due
from notifier.providers.circuit import circuit_record
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-for-tests"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.NOTIFIER_METRICS_PUBLIC = False


def scrape(**headers) -> dict:
    """The scrape's samples as {(name, sorted labels): value}."""
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")  # Prometheus's text format
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def test_without_a_token_metrics_are_off(settings):
    settings.METRICS_TOKEN = ""
    settings.NOTIFIER_METRICS_PUBLIC = False

    assert Client().get("/metrics").status_code == 404


def test_with_a_token_a_scrape_without_it_or_with_another_is_refused(token):
    missing = Client().get("/metrics")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")

    assert missing.status_code == wrong.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"notifier_" not in missing.content + wrong.content


def test_with_the_token_the_scrape_answers_every_metric_family(token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"notifier_deliveries", "notifier_delivery_latency_seconds", "notifier_delivery_retries",
            "notifier_webhook_events", "notifier_route_suppressed", "notifier_rate_limited",
            "notifier_dead_letters", "notifier_due_rows", "notifier_due_oldest_seconds",
            "notifier_circuit_state", "notifier_metrics_source_up"} <= names


def test_metrics_made_public_answer_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    settings.NOTIFIER_METRICS_PUBLIC = True

    assert Client().get("/metrics").status_code == 200


def test_due_rows_count_the_queued_deliveries_due_now_and_the_notifications_due_for_routing(
        token, order_type, reachable_user):
    make_notification(order_type, reachable_user, channels=["push", "email"])
    route_due("high")
    Delivery.objects.filter(channel="email").update(next_attempt_at=timezone.now() + timedelta(hours=1))  # backoff
    make_notification(order_type, reachable_user, priority="low", due_at=timezone.now() - timedelta(minutes=5))
    make_notification(order_type, reachable_user, priority="low", due_at=timezone.now() + timedelta(hours=2))

    samples = scrape()

    assert samples[("notifier_due_rows", (("queue", "push.high"),))] == 2
    assert ("notifier_due_rows", (("queue", "email.high"),)) not in samples  # not due yet
    assert samples[("notifier_due_rows", (("queue", "route.low"),))] == 1
    assert 290 <= samples[("notifier_due_oldest_seconds", (("queue", "route.low"),))] <= 400
    assert samples[("notifier_metrics_source_up", (("source", "database"),))] == 1


def test_dead_letter_depth_leaves_out_the_replayed_ones(token, order_type, reachable_user):
    make_notification(order_type, reachable_user, channels=["push", "sms"])
    route_due("high")
    dead = list(Delivery.objects.filter(channel="push"))
    Delivery.objects.filter(channel__in=["push", "sms"]).update(status=S.DEAD, failed_at=timezone.now())
    replay = Delivery.objects.get(id=dead[0].id)
    replay.pk, replay.status, replay.replayed_from_id = None, S.QUEUED, dead[0].id
    replay.save()

    samples = scrape()

    assert samples[("notifier_dead_letters", (("channel", "push"),))] == 1
    assert samples[("notifier_dead_letters", (("channel", "sms"),))] == 1


def test_circuit_state_shows_one_state_per_provider(token, settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"email": ["sendgrid", "smtp"], "push": [], "sms": []}
    settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD = 2
    circuit_record("sendgrid", succeeded=False, trailing_failures=2)

    samples = scrape()

    def state(provider, name):
        return samples[("notifier_circuit_state", (("provider", provider), ("state", name)))]

    assert (state("sendgrid", "open"), state("sendgrid", "closed")) == (1, 0)
    assert (state("smtp", "closed"), state("smtp", "open")) == (1, 0)
    assert samples[("notifier_metrics_source_up", (("source", "redis"),))] == 1


def test_a_database_count_over_its_deadline_leaves_the_queue_gauges_out_and_says_so(token, settings):
    settings.NOTIFIER_METRICS_QUERY_TIMEOUT_MS = 200
    # Another session holds the deliveries table locked (a long migration, say): the count waits on it.
    params = connection.settings_dict
    with psycopg.connect(dbname=params["NAME"], user=params["USER"], password=params["PASSWORD"] or None,
                         host=params["HOST"], port=params["PORT"] or 5432) as other:
        other.execute(f"LOCK TABLE {Delivery._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        samples = scrape()
        took = time.monotonic() - started

    assert samples[("notifier_metrics_source_up", (("source", "database"),))] == 0
    assert not [key for key in samples if key[0] in ("notifier_due_rows", "notifier_dead_letters")]
    assert took < 2


def test_metrics_answer_only_reads(token):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405
