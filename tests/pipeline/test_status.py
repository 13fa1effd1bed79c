"""The delivery status machine (notifier/pipeline/status.py): one table of legal transitions, an event for
every change, and the later words of providers kept as history without moving a delivery backwards."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import Delivery, DeliveryStatus as S
from notifier.pipeline import status
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.pipeline.status import (
    IllegalTransition,
    StatusEvent,
    deliveries_move,
    deliveries_save_status,
    delivery_events_apply,
    transition_allowed,
)
from notifier.pipeline.sweep import release_expired_claims
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

SCRIPTED = "tests.support.scripted_provider"


@pytest.fixture
def sent_email(settings, order_type, reachable_user):
    """An email delivery a provider took: status sent, as a real one leaves it until its webhooks come."""
    settings.NOTIFIER_CHANNEL_PROVIDERS = {**settings.NOTIFIER_CHANNEL_PROVIDERS, "email": [SCRIPTED]}
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    deliver_due("email", "high")
    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == S.SENT
    return delivery


def history(delivery):
    return list(delivery.events.order_by("id").values_list("status", "source", "applied"))


def test_the_success_path_only_moves_forward():
    path = [S.SENDING, S.SENT, S.DELIVERED, S.OPENED, S.CLICKED]
    for earlier, later in zip(path, path[1:]):
        assert transition_allowed(earlier, later)
        assert not transition_allowed(later, earlier)
    assert not transition_allowed(S.CLICKED, S.DELIVERED)


def test_terminal_statuses_go_nowhere():
    for terminal in status.TERMINAL:
        assert not any(transition_allowed(terminal, other) for other in S.values)


def test_the_deliver_step_records_the_claim_and_the_outcome_as_events(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    deliver_due("email", "high")

    delivery = Delivery.objects.get(notification=notification)
    assert history(delivery) == [("sending", "worker", True), ("delivered", "worker", True)]
    assert delivery.delivered_at is not None


def test_provider_events_walk_the_path_and_stamp_when_each_step_was_first_reached(sent_email):
    t0 = timezone.now()
    changes = delivery_events_apply([
        StatusEvent(sent_email.id, S.DELIVERED, "sendgrid", at=t0),
        StatusEvent(sent_email.id, S.OPENED, "pixel", at=t0 + timedelta(seconds=5)),
        StatusEvent(sent_email.id, S.CLICKED, "click", at=t0 + timedelta(seconds=9), payload={"url": "https://x.test"}),
    ])

    assert [(c.previous, c.status) for c in changes] == [("sent", "delivered"), ("delivered", "opened"),
                                                        ("opened", "clicked")]
    sent_email.refresh_from_db()
    assert sent_email.status == S.CLICKED
    assert (sent_email.delivered_at, sent_email.opened_at, sent_email.clicked_at) == (
        t0, t0 + timedelta(seconds=5), t0 + timedelta(seconds=9))
    assert sent_email.events.get(status="clicked").payload == {"url": "https://x.test"}


def test_a_late_delivered_never_overwrites_clicked_but_is_kept_as_history(sent_email):
    t0 = timezone.now()
    delivery_events_apply([StatusEvent(sent_email.id, S.CLICKED, "click", at=t0)])
    changes = delivery_events_apply([StatusEvent(sent_email.id, S.DELIVERED, "sendgrid", at=t0 - timedelta(seconds=3))])

    assert changes == []
    sent_email.refresh_from_db()
    assert sent_email.status == S.CLICKED
    assert history(sent_email)[-2:] == [("clicked", "click", True), ("delivered", "sendgrid", False)]
    assert sent_email.opened_at == t0  # a click proves the open


def test_a_bounce_after_delivered_is_recorded(sent_email):
    delivery_events_apply([StatusEvent(sent_email.id, S.DELIVERED, "sendgrid")])
    [change] = delivery_events_apply([StatusEvent(sent_email.id, S.BOUNCED, "sendgrid")])

    assert (change.previous, change.status) == (S.DELIVERED, S.BOUNCED)
    sent_email.refresh_from_db()
    assert sent_email.status == S.BOUNCED and sent_email.failed_at is not None


def test_a_repeated_event_is_recorded_once(sent_email):
    for _ in range(3):
        delivery_events_apply([StatusEvent(sent_email.id, S.OPENED, "pixel")])

    assert [row for row in history(sent_email) if row[0] == "opened"] == [("opened", "pixel", True)]


def test_events_for_unknown_deliveries_are_ignored(sent_email):
    assert delivery_events_apply([StatusEvent(sent_email.id + 1000, S.OPENED, "pixel")]) == []


def test_a_worker_path_that_tries_an_illegal_change_writes_nothing(sent_email):
    sent_email.status = S.QUEUED  # sent → queued: no such transition

    with pytest.raises(IllegalTransition):
        deliveries_save_status([sent_email], S.SENT, ["status"])
    sent_email.refresh_from_db()
    assert sent_email.status == S.SENT


def test_a_move_skips_rows_whose_status_does_not_allow_it(sent_email):
    changes = deliveries_move({"id": sent_email.id}, S.CANCELLED)  # only waiting rows can be cancelled

    assert changes == []
    sent_email.refresh_from_db()
    assert sent_email.status == S.SENT


def test_a_lost_worker_is_recorded_as_the_sweepers_move(order_type, reachable_user, settings):
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    Delivery.objects.filter(notification=notification).update(status=S.SENDING, claimed_at=timezone.now(), attempts=1)

    release_expired_claims(now=timezone.now() + timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS + 1))

    delivery = Delivery.objects.get(notification=notification)
    assert history(delivery) == [("queued", "worker", True)]
    assert delivery.events.get().previous_status == "sending"


def test_observers_see_every_applied_change_and_nothing_else(sent_email, monkeypatch):
    seen = []
    monkeypatch.setattr(status, "OBSERVERS", [seen.extend])

    delivery_events_apply([StatusEvent(sent_email.id, S.OPENED, "pixel")])
    delivery_events_apply([StatusEvent(sent_email.id, S.OPENED, "pixel")])  # a repeat: no change

    assert [(c.delivery.id, c.previous, c.status, c.source) for c in seen] == [(sent_email.id, "sent", "opened", "pixel")]


def test_applying_many_events_costs_a_fixed_number_of_queries(order_type, django_assert_max_num_queries):
    from tests.conftest import make_reachable_user

    ids = []
    for index in range(30):
        notification = make_notification(order_type, make_reachable_user(f"u_{index}", devices=()), channels=["email"])
        route_due("high")
        ids.append(Delivery.objects.get(notification=notification).id)
    Delivery.objects.filter(id__in=ids).update(status=S.SENT)

    # The locking read, the seen events, one write per set of changed columns (2 here), the events.
    with django_assert_max_num_queries(6):
        changes = delivery_events_apply([StatusEvent(i, S.OPENED, "pixel") for i in ids]
                                        + [StatusEvent(i, S.DELIVERED, "sendgrid") for i in ids[:10]])
    assert len(changes) == 30


def test_nothing_outside_the_status_module_writes_a_delivery_status():
    """DESIGN: one function applies every delivery status change. A set-based update of Delivery.status,
    or rows_update of a delivery's "status", anywhere else would skip the table and the history."""
    import re
    from pathlib import Path

    root = Path(status.__file__).resolve().parents[1]
    writes = re.compile(r"\.update\(\s*status=DeliveryStatus|rows_update\([^)]*deliver[^)]*\"status\"")
    offenders = [str(path.relative_to(root)) for path in root.rglob("*.py")
                 if "migrations" not in path.parts and path.name != "status.py" and writes.search(path.read_text())]
    assert offenders == []


def test_a_lost_claim_on_its_last_attempt_dies_and_reaches_a_producers_webhook(
    order_type, reachable_user, producer, settings
):
    """The sweeper writes last_error as an SQL expression; the observers get the text it wrote."""
    from notifier.models import ProducerEvent

    producer.webhook_url = "https://hooks.example/notifier"
    producer.save()
    notification = make_notification(order_type, reachable_user, channels=["email"])  # the first producer's
    route_due("high")
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    Delivery.objects.filter(notification=notification).update(
        status=S.SENDING, claimed_at=timezone.now(), attempts=max_attempts, last_error="smtp transient: timeout")

    release_expired_claims(now=timezone.now() + timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS + 1))

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == S.DEAD
    [event] = ProducerEvent.objects.filter(delivery=delivery)
    assert event.data["status"] == "dead"
    assert "worker lost during the last allowed attempt" in event.data["error"]


@pytest.mark.parametrize("report, final", [(S.DELIVERED, S.DELIVERED), (S.BOUNCED, S.BOUNCED)])
def test_a_report_that_beats_the_workers_record_of_the_send_applies_once_it_is_recorded(
    settings, order_type, reachable_user, report, final
):
    """SendGrid names our delivery id, so its webhook can arrive while the row is still `sending`."""
    from notifier.models import PendingProviderEvent
    from notifier.pipeline.dispatch import deliveries_claim, deliveries_send

    settings.NOTIFIER_CHANNEL_PROVIDERS = {**settings.NOTIFIER_CHANNEL_PROVIDERS, "email": [SCRIPTED]}
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    [claimed] = deliveries_claim("email", "high", 10)

    assert delivery_events_apply([StatusEvent(claimed.id, report, "sendgrid")]) == []  # kept, not applied
    assert Delivery.objects.get(id=claimed.id).status == S.SENDING
    deliveries_send([claimed])

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == final
    assert history(delivery) == [("sending", "worker", True), ("sent", "worker", True), (report, "sendgrid", True)]
    assert not PendingProviderEvent.objects.exists()
