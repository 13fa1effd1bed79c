"""The status machine's observer counts outcomes, retries, later reports and latency, after commit, with
no query of its own. The status functions are called directly on real rows."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from notifier.metrics import status_changes_count
from notifier.models import Delivery, DeliveryStatus as S, EventSource
from notifier.pipeline import status
from notifier.pipeline.route import route_due
from notifier.pipeline.status import StatusChange, StatusEvent
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_delivery(order_type, reachable_user):
    """A routed email delivery as the deliver step holds it: claimed (sending), notification loaded."""
    make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    delivery = Delivery.objects.select_related("notification").get(channel="email")
    Delivery.objects.filter(id=delivery.id).update(status=S.SENDING, attempts=1)
    delivery.status, delivery.attempts, delivery.provider = S.SENDING, 1, "sendgrid"
    return delivery


def test_the_observer_is_registered_by_the_app():
    assert status_changes_count in status.OBSERVERS


def test_a_sent_delivery_counts_its_outcome_and_its_latency_from_accept(email_delivery, figures,
                                                                        django_capture_on_commit_callbacks):
    labels = {"channel": "email", "provider": "sendgrid", "priority": "high", "status": "sent"}
    before = figures("notifier_deliveries_total", **labels)
    latency_before = figures("notifier_delivery_latency_seconds_count", channel="email", priority="high")
    fast_before = figures("notifier_delivery_latency_seconds_bucket", channel="email", priority="high", le="0.5")
    accepted = email_delivery.notification.created_at

    email_delivery.status = S.SENT
    with django_capture_on_commit_callbacks(execute=True):
        status.deliveries_save_status([email_delivery], S.SENDING, ["status", "provider"],
                                      at=accepted + timedelta(seconds=1))

    assert figures("notifier_deliveries_total", **labels) == before + 1
    assert figures("notifier_delivery_latency_seconds_count", channel="email", priority="high") == latency_before + 1
    # One second after accept: above the 0.5 s bucket, inside the 1 s one.
    assert figures("notifier_delivery_latency_seconds_bucket", channel="email", priority="high",
                   le="0.5") == fast_before
    assert figures("notifier_delivery_latency_seconds_bucket", channel="email", priority="high",
                   le="1.0") >= latency_before + 1


def test_a_scheduled_notification_counts_its_latency_from_its_scheduled_time(email_delivery, figures,
                                                                           django_capture_on_commit_callbacks):
    notification = email_delivery.notification
    notification.schedule_at = notification.created_at + timedelta(hours=3)
    sum_before = figures("notifier_delivery_latency_seconds_sum", channel="email", priority="high")

    email_delivery.status = S.SENT
    with django_capture_on_commit_callbacks(execute=True):
        status.deliveries_save_status([email_delivery], S.SENDING, ["status"],
                                      at=notification.schedule_at + timedelta(seconds=2))

    assert figures("notifier_delivery_latency_seconds_sum", channel="email", priority="high") == pytest.approx(
        sum_before + 2)


def test_a_failed_attempt_put_back_in_the_queue_counts_as_a_retry(email_delivery, figures,
                                                                  django_capture_on_commit_callbacks):
    before = figures("notifier_delivery_retries_total", channel="email", provider="sendgrid")
    outcomes_before = figures("notifier_deliveries_total", channel="email", provider="sendgrid", priority="high",
                              status="queued")

    email_delivery.status, email_delivery.last_error = S.QUEUED, "sendgrid transient: 503 Service Unavailable"
    with django_capture_on_commit_callbacks(execute=True):
        status.deliveries_save_status([email_delivery], S.SENDING, ["status", "last_error"])

    assert figures("notifier_delivery_retries_total", channel="email", provider="sendgrid") == before + 1
    assert figures("notifier_deliveries_total", channel="email", provider="sendgrid", priority="high",
                   status="queued") == outcomes_before  # still in the pipeline: no outcome yet


def test_a_send_deferred_by_an_open_circuit_is_not_a_retry(email_delivery, figures,
                                                           django_capture_on_commit_callbacks):
    before = figures("notifier_delivery_retries_total", channel="email", provider="sendgrid")

    # The channel's own wording (notifier/channels/base.py) for a send it deferred.
    email_delivery.status = S.QUEUED
    email_delivery.last_error = "sendgrid circuit open: not sent, waiting until 2026-12-02T05:00:00Z"
    with django_capture_on_commit_callbacks(execute=True):
        status.deliveries_save_status([email_delivery], S.SENDING, ["status", "last_error"])

    assert figures("notifier_delivery_retries_total", channel="email", provider="sendgrid") == before


def test_a_provider_report_after_sending_counts_as_a_report_not_a_second_outcome(
        email_delivery, figures, django_capture_on_commit_callbacks):
    email_delivery.status = S.SENT
    with django_capture_on_commit_callbacks(execute=True):
        status.deliveries_save_status([email_delivery], S.SENDING, ["status", "provider"])
    outcomes = figures("notifier_deliveries_total", channel="email", provider="sendgrid", priority="high",
                       status="delivered")
    reports = figures("notifier_delivery_reports_total", channel="email", provider="sendgrid", status="delivered",
                      source="sendgrid")

    with django_capture_on_commit_callbacks(execute=True):
        status.delivery_events_apply([StatusEvent(email_delivery.id, S.DELIVERED, EventSource.SENDGRID)])

    assert figures("notifier_delivery_reports_total", channel="email", provider="sendgrid", status="delivered",
                   source="sendgrid") == reports + 1
    assert figures("notifier_deliveries_total", channel="email", provider="sendgrid", priority="high",
                   status="delivered") == outcomes


def test_a_set_based_move_counts_each_row_it_moved(order_type, reachable_user, figures,
                                                   django_capture_on_commit_callbacks):
    make_notification(order_type, reachable_user, channels=["push"])
    route_due("high")
    before = figures("notifier_deliveries_total", channel="push", provider="", priority="high", status="cancelled")

    with django_capture_on_commit_callbacks(execute=True):
        moved = status.deliveries_move({"channel": "push"}, S.CANCELLED)

    assert len(moved) == 2
    assert figures("notifier_deliveries_total", channel="push", provider="", priority="high",
                   status="cancelled") == before + 2


def test_a_rolled_back_write_counts_nothing(email_delivery, figures):
    labels = {"channel": "email", "provider": "sendgrid", "priority": "high", "status": "dead"}
    before = figures("notifier_deliveries_total", **labels)

    email_delivery.status = S.DEAD
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            status.deliveries_save_status([email_delivery], S.SENDING, ["status"])
            raise RuntimeError("the batch fails after the write")

    assert figures("notifier_deliveries_total", **labels) == before


def test_the_observer_makes_no_query_even_on_rows_loaded_without_their_notification(
        email_delivery, django_assert_num_queries):
    row = Delivery.objects.only("id", "status").get(id=email_delivery.id)  # channel, provider… left out
    changes = [StatusChange(row, S.SENDING, S.SENT, EventSource.WORKER, timezone.now()),
               StatusChange(row, S.SENDING, S.QUEUED, EventSource.WORKER, timezone.now())]

    with django_assert_num_queries(0):
        status_changes_count(changes * 50)


def test_a_claim_the_sweeper_gives_back_to_the_queue_counts_as_a_retry(email_delivery, settings, figures,
                                                                       django_capture_on_commit_callbacks):
    from notifier.pipeline.sweep import release_expired_claims

    Delivery.objects.filter(id=email_delivery.id).update(claimed_at=timezone.now(), provider="sendgrid")
    before = figures("notifier_delivery_retries_total", channel="email", provider="sendgrid")

    with django_capture_on_commit_callbacks(execute=True):
        release_expired_claims(now=timezone.now() + timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS + 1))

    assert Delivery.objects.get(id=email_delivery.id).status == S.QUEUED
    assert figures("notifier_delivery_retries_total", channel="email", provider="sendgrid") == before + 1
