"""Producer webhooks (notifier/producer_webhooks.py): status events are recorded with the change, POSTed in
signed batches to a real HTTP endpoint, retried with backoff from the database, and never lost by a sender
that dies holding them."""
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import celeryconfig
from notifier import services
from notifier.models import Delivery, Producer, ProducerEvent, ProducerEventStatus as E
from notifier.models.producers import webhook_url_validate
from notifier.pipeline.status import StatusChange, StatusEvent, delivery_events_apply, deliveries_move
from notifier.producer_webhooks import (
    producer_event_unsubscribed,
    producer_events_claim,
    producer_events_purge,
    producer_events_record,
    producer_events_record_outcome,
    producer_events_replay,
    producer_webhooks_send,
    producers_with_webhook,
    signature_header,
)
from notifier_project.celery import app
from tests.producer_webhooks.conftest import make_delivery
from tests.test_indexes import plan_of

pytestmark = pytest.mark.django_db


def test_a_producer_receives_its_status_events_in_one_signed_batch_the_readme_snippet_verifies(
        hooked_producer, endpoint, order_type, reachable_user, readme_verify):
    email = make_delivery(hooked_producer, order_type, reachable_user, idempotency_key="order-42")
    sms = make_delivery(hooked_producer, order_type, reachable_user, channel="sms", target=reachable_user.phone)
    delivery_events_apply([StatusEvent(email.id, "delivered", "sendgrid"),
                           StatusEvent(sms.id, "failed", "twilio", fields={"last_error": "30003 unreachable"})])

    assert producer_webhooks_send() == 2

    [request] = endpoint.requests
    header = request.headers["Notifier-Signature"]
    assert request.method == "POST" and request.path == "/notifier-events"
    assert request.headers["Content-Type"] == "application/json"
    assert readme_verify(request.raw, header, hooked_producer.webhook_secret) is True
    assert readme_verify(request.raw.replace(b"delivered", b"clicked"), header, hooked_producer.webhook_secret) is False
    assert readme_verify(request.raw, header, "whsec_someone-else") is False
    events = {event["data"]["delivery_id"]: event for event in request.body["events"]}
    assert events[email.id]["type"] == "delivery.delivered"
    assert set(events[email.id]) == {"id", "type", "created_at", "data"}
    data = events[email.id]["data"]
    assert data == {"notification_id": str(email.notification_id), "delivery_id": email.id, "channel": "email",
                    "status": "delivered", "previous_status": "sent", "source": "sendgrid", "at": data["at"],
                    "user_id": "u_42", "type": "order_shipped", "idempotency_key": "order-42"}
    assert events[sms.id]["type"] == "delivery.failed"
    assert events[sms.id]["data"]["error"] == "30003 unreachable"
    assert set(ProducerEvent.objects.values_list("status", flat=True)) == {E.SENT}


def test_the_readme_snippet_refuses_a_signature_older_than_five_minutes(hooked_producer, readme_verify):
    body = b'{"events": []}'
    secret = hooked_producer.webhook_secret

    assert readme_verify(body, signature_header(secret, int(time.time()), body), secret) is True
    assert readme_verify(body, signature_header(secret, int(time.time()) - 600, body), secret) is False
    assert readme_verify(body, "v1=" + signature_header(secret, 0, body).split("v1=")[1], secret) is False
    assert readme_verify(body, "garbage", secret) is False


@pytest.mark.parametrize("header", ["t={now},v1=é", "t=²³,v1=00", "t={now},v1=\u0000", "t=,v1=", "=,=,="])
def test_the_readme_snippet_answers_false_for_a_hostile_header_and_never_raises(hooked_producer, readme_verify, header):
    body = b'{"events": []}'

    assert readme_verify(body, header.format(now=int(time.time())), hooked_producer.webhook_secret) is False


def test_many_events_go_in_batches_of_the_batch_size(hooked_producer, endpoint, order_type, reachable_user, settings):
    settings.NOTIFIER_PRODUCER_WEBHOOK_BATCH_SIZE = 2
    deliveries = [make_delivery(hooked_producer, order_type, reachable_user, target=f"u{n}@example.com")
                  for n in range(5)]
    delivery_events_apply([StatusEvent(d.id, "delivered", "sendgrid") for d in deliveries])

    assert producer_webhooks_send() == 5

    assert [len(request.body["events"]) for request in endpoint.requests] == [2, 2, 1]
    assert sorted(e["data"]["delivery_id"] for r in endpoint.requests for e in r.body["events"]) == sorted(
        d.id for d in deliveries)


def test_statuses_a_producer_does_not_hear_about_record_no_event(hooked_producer, order_type, reachable_user):
    delivery = make_delivery(hooked_producer, order_type, reachable_user, status="queued")

    deliveries_move({"id": delivery.id}, "cancelled")

    assert ProducerEvent.objects.count() == 0


def test_a_producer_without_a_webhook_gets_no_events_while_another_does(
        hooked_producer, order_type, reachable_user):
    quiet, _ = Producer.create_with_key("quiet", ["send"])
    theirs = make_delivery(quiet, order_type, reachable_user, target="a@example.com")
    ours = make_delivery(hooked_producer, order_type, reachable_user, target="b@example.com")

    delivery_events_apply([StatusEvent(theirs.id, "delivered", "sendgrid"),
                           StatusEvent(ours.id, "bounced", "sendgrid")])

    assert list(ProducerEvent.objects.values_list("producer_id", "type", "delivery_id")) == [
        (hooked_producer.id, "delivery.bounced", ours.id)]


def test_when_no_producer_has_a_webhook_the_observer_costs_no_query(
        producer, order_type, reachable_user, django_assert_num_queries):
    delivery = make_delivery(producer, order_type, reachable_user)
    changes = [StatusChange(delivery, "sent", "delivered", "sendgrid", timezone.now())]
    producers_with_webhook()  # loaded once per process and NOTIFIER_PROCESS_CACHE_SECONDS, and on a save

    with django_assert_num_queries(0):
        producer_events_record(changes * 50)

    assert ProducerEvent.objects.count() == 0


def test_on_the_deliver_path_the_observer_costs_one_insert_for_a_group(
        hooked_producer, order_type, reachable_user, django_assert_num_queries):
    for n in range(50):
        make_delivery(hooked_producer, order_type, reachable_user, target=f"u{n}@example.com")
    # As deliveries_claim loads them: with the notification, its type and its recipient.
    loaded = list(Delivery.objects.select_related("notification__type", "notification__recipient"))
    changes = [StatusChange(d, "sending", "delivered", "worker", timezone.now()) for d in loaded]
    producers_with_webhook()  # loaded once per process and NOTIFIER_PROCESS_CACHE_SECONDS, and on a save

    with django_assert_num_queries(1) as captured:
        producer_events_record(changes)

    assert captured.captured_queries[0]["sql"].startswith('INSERT INTO "notifier_producerevent"')
    assert ProducerEvent.objects.count() == 50


def test_on_other_paths_the_observer_reads_the_producers_in_one_query(
        hooked_producer, order_type, reachable_user, django_assert_num_queries):
    for n in range(20):
        make_delivery(hooked_producer, order_type, reachable_user, target=f"u{n}@example.com")
    bare = list(Delivery.objects.only("id", "notification_id", "channel", "status"))
    changes = [StatusChange(d, "sent", "dead", "worker", timezone.now()) for d in bare]
    producers_with_webhook()

    with django_assert_num_queries(2):  # the notifications' producers, then the INSERT
        producer_events_record(changes)

    assert ProducerEvent.objects.filter(type="delivery.dead").count() == 20
    assert "error" not in ProducerEvent.objects.first().data  # last_error was not loaded: not guessed


def test_a_webhook_set_or_cleared_in_this_process_applies_at_once_without_a_query(
        producer, order_type, reachable_user, django_assert_num_queries):
    delivery = make_delivery(producer, order_type, reachable_user)
    producer.webhook_url = "https://shop.example.com/hooks"
    producer.save()

    with django_assert_num_queries(1):  # the INSERT: the notification, its type and recipient are loaded
        producer_events_record([StatusChange(delivery, "sent", "delivered", "sendgrid", timezone.now())])
    producer.webhook_url = ""
    producer.save()
    with django_assert_num_queries(0):
        producer_events_record([StatusChange(delivery, "delivered", "opened", "pixel", timezone.now())])

    assert list(ProducerEvent.objects.values_list("type", flat=True)) == ["delivery.delivered"]


def test_recording_an_event_twice_keeps_one_with_a_stable_id(hooked_producer, order_type, reachable_user):
    delivery = make_delivery(hooked_producer, order_type, reachable_user)
    change = StatusChange(delivery, "sent", "delivered", "sendgrid", timezone.now())

    producer_events_record([change])
    first_id = ProducerEvent.objects.get().id
    producer_events_record([change])

    assert list(ProducerEvent.objects.values_list("id", flat=True)) == [first_id]


def test_an_unsubscribe_from_a_producers_email_sends_it_a_recipient_unsubscribed_event(
        hooked_producer, endpoint, order_type, reachable_user):
    delivery = make_delivery(hooked_producer, order_type, reachable_user)

    unsubscription = services.recipient_unsubscribe(reachable_user.id, "marketing", source="link",
                                                    type_key="order_shipped", notification=delivery.notification)
    producer_event_unsubscribed(unsubscription)  # a second caller changes nothing
    producer_webhooks_send()

    [event] = endpoint.requests[0].body["events"]
    assert event["type"] == "recipient.unsubscribed"
    assert event["data"] == {"unsubscription_id": unsubscription.id, "user_id": "u_42", "category": "marketing",
                             "channel": "email", "type": "order_shipped",
                             "notification_id": str(delivery.notification_id), "source": "link",
                             "at": unsubscription.created_at.isoformat()}


def test_an_unsubscribe_without_a_notification_reports_to_no_one(hooked_producer, reachable_user):
    services.recipient_unsubscribe(reachable_user.id, "marketing", source="admin")

    assert ProducerEvent.objects.count() == 0


def test_a_failing_endpoint_gets_retries_with_backoff_and_is_not_hammered_meanwhile(
        hooked_producer, endpoint, order_type, reachable_user):
    endpoint.set_default(status=503, body="down for maintenance")
    first = make_delivery(hooked_producer, order_type, reachable_user, target="a@example.com")
    delivery_events_apply([StatusEvent(first.id, "delivered", "sendgrid")])
    before = timezone.now()

    assert producer_webhooks_send() == 0

    event = ProducerEvent.objects.get()
    assert (event.status, event.attempts) == (E.PENDING, 1)
    assert event.last_error == "HTTP 503: down for maintenance"
    assert before + timedelta(seconds=5) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    hooked_producer.refresh_from_db()
    assert hooked_producer.webhook_paused_until == event.next_attempt_at

    # A new event meanwhile waits for the pause: the down endpoint gets no request per tick.
    second = make_delivery(hooked_producer, order_type, reachable_user, target="b@example.com")
    delivery_events_apply([StatusEvent(second.id, "delivered", "sendgrid")])
    assert producer_webhooks_send() == 0
    assert len(endpoint.requests) == 1

    # The backoff ends (the clock moved on) and the second try fails too: the next wait is longer.
    _time_passes(hooked_producer, timedelta(seconds=10))
    producer_webhooks_send()
    assert len(endpoint.requests) == 2 and len(endpoint.requests[1].body["events"]) == 2
    event.refresh_from_db()
    assert event.attempts == 2
    assert timezone.now() + timedelta(seconds=10) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=20)

    # Then the endpoint comes back: everything is sent, the pause ends.
    endpoint.set_default(status=204)
    _time_passes(hooked_producer, timedelta(seconds=20))
    assert producer_webhooks_send() == 2
    assert set(ProducerEvent.objects.values_list("status", flat=True)) == {E.SENT}
    hooked_producer.refresh_from_db()
    assert hooked_producer.webhook_paused_until is None


def test_a_timeout_or_a_redirect_counts_as_a_failure(hooked_producer, endpoint, order_type, reachable_user, settings):
    settings.NOTIFIER_PRODUCER_WEBHOOK_TIMEOUT_SECONDS = 0.2
    delivery = make_delivery(hooked_producer, order_type, reachable_user)
    delivery_events_apply([StatusEvent(delivery.id, "delivered", "sendgrid")])

    endpoint.set_default(status=200, delay=1)
    producer_webhooks_send()
    assert "Timeout" in ProducerEvent.objects.get().last_error

    endpoint.set_default(status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"})
    _time_passes(hooked_producer, timedelta(hours=1))
    producer_webhooks_send()
    event = ProducerEvent.objects.get()
    assert (event.status, event.last_error) == (
        E.PENDING, "HTTP 302: a redirect to http://127.0.0.1:9/elsewhere, not followed")
    assert len(endpoint.requests) == 2  # the redirect was not followed


def test_an_event_still_refused_when_its_24_hours_end_fails_and_an_admin_replay_sends_it_again(
        hooked_producer, endpoint, order_type, reachable_user):
    endpoint.set_default(status=500)
    delivery = make_delivery(hooked_producer, order_type, reachable_user)
    delivery_events_apply([StatusEvent(delivery.id, "delivered", "sendgrid")])
    ProducerEvent.objects.update(give_up_at=timezone.now() + timedelta(seconds=1))  # recorded a day ago

    producer_webhooks_send()

    event = ProducerEvent.objects.get()
    assert (event.status, event.attempts, event.last_error) == (E.FAILED, 1, "HTTP 500: {}")
    endpoint.set_default(status=200)
    assert producer_events_replay(ProducerEvent.objects.all()) == 1
    assert producer_webhooks_send() == 1
    event.refresh_from_db()
    assert event.status == E.SENT
    assert endpoint.requests[0].body["events"][0]["id"] == endpoint.requests[1].body["events"][0]["id"] == str(event.id)


def test_an_event_claimed_by_a_sender_that_died_is_sent_after_the_lease(
        hooked_producer, endpoint, order_type, reachable_user, settings):
    settings.NOTIFIER_PRODUCER_WEBHOOK_LEASE_SECONDS = 0.5
    delivery = make_delivery(hooked_producer, order_type, reachable_user)
    delivery_events_apply([StatusEvent(delivery.id, "delivered", "sendgrid")])
    [claimed] = producer_events_claim(hooked_producer, 100)  # then the sender is killed before it POSTs

    assert producer_webhooks_send() == 0  # still leased: no second sender takes it
    time.sleep(0.6)
    assert producer_webhooks_send() == 1

    assert len(endpoint.requests) == 1
    # The dead sender's outcome, had it been written late, would change nothing: its claim is gone.
    producer_events_record_outcome(hooked_producer, [claimed], "HTTP 500: late")
    event = ProducerEvent.objects.get()
    assert (event.status, event.attempts, event.last_error) == (E.SENT, 2, "")


def test_a_webhook_url_gets_a_secret_when_it_is_set_and_a_rotation_replaces_it(producer):
    assert producer.webhook_secret == ""

    producer.webhook_url = "https://shop.example.com/hooks"
    producer.save(update_fields=["webhook_url"])
    producer.refresh_from_db()
    secret = producer.webhook_secret

    assert secret.startswith("whsec_") and len(secret) > 40
    assert producer.rotate_webhook_secret() != secret


@pytest.mark.parametrize("url, problem", [
    ("ftp://shop.example.com/hooks", "http"),
    ("https://user:pw@shop.example.com/hooks", "credentials"),
    ("https:///hooks", "host"),
    ("https://shop.example.com:port/hooks", "Not a URL"),
    ("https://shop.example.com/a b", "spaces"),
    ("https://shop.example.com/" + "a" * 500, "500"),
])
def test_a_webhook_url_must_be_http_without_credentials_and_short(url, problem):
    with pytest.raises(ValidationError, match=problem):
        webhook_url_validate(url)


def test_a_plain_https_webhook_url_is_valid():
    webhook_url_validate("https://shop.example.com:8443/notifier/events?source=notifier")


def test_beat_sends_producer_webhooks_on_the_maintenance_queue():
    entry = celeryconfig.beat_schedule["send-producer-webhooks"]

    app.loader.import_default_modules()
    assert entry["task"] == "notifier.send_producer_webhooks" and entry["task"] in app.tasks
    assert celeryconfig.route_task(entry["task"], (), {}, {})["queue"] == "maintenance"
    assert entry["schedule"] <= 10


def test_the_sender_costs_a_constant_number_of_queries_per_batch(
        hooked_producer, endpoint, order_type, reachable_user):
    deliveries = [make_delivery(hooked_producer, order_type, reachable_user, target=f"u{n}@example.com")
                  for n in range(30)]
    delivery_events_apply([StatusEvent(d.id, "delivered", "sendgrid") for d in deliveries])

    with CaptureQueriesContext(connection) as captured:
        assert producer_webhooks_send() == 30

    # producers; claim (select, update, load); mark sent; plus the savepoints of the claim's transaction
    assert len([q for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]) == 5


def _time_passes(producer, by: timedelta) -> None:
    """Move the producer's pause and its events' next attempts `by` into the past, as if that time had gone."""
    now = timezone.now()
    for event in ProducerEvent.objects.filter(producer=producer, status=E.PENDING):
        event.next_attempt_at = min(event.next_attempt_at - by, now)
        event.save(update_fields=["next_attempt_at"])
    Producer.objects.filter(id=producer.id, webhook_paused_until__isnull=False).update(
        webhook_paused_until=now - timedelta(seconds=1))


def test_events_older_than_the_retention_are_purged_and_newer_ones_kept(hooked_producer, order_type, reachable_user):
    old, new = (make_delivery(hooked_producer, order_type, reachable_user, target=f"{n}@example.com") for n in "ab")
    delivery_events_apply([StatusEvent(old.id, "delivered", "sendgrid"), StatusEvent(new.id, "delivered", "sendgrid")])
    ProducerEvent.objects.filter(delivery=old).update(created_at=timezone.now() - timedelta(days=8))

    assert producer_events_purge(batch_size=1) == 1

    assert list(ProducerEvent.objects.values_list("delivery_id", flat=True)) == [new.id]


def test_claiming_a_producers_due_events_uses_the_due_index(hooked_producer):
    # producer_events_claim's select, without its FOR UPDATE.
    plan = plan_of(ProducerEvent.objects.filter(producer=hooked_producer, status=E.PENDING,
                                                next_attempt_at__lte=timezone.now()).order_by("next_attempt_at"))

    assert "producer_event_due" in plan, plan
    assert "Sort" not in plan, plan


def test_the_purge_and_the_admin_listing_use_the_created_at_indexes(hooked_producer):
    assert "producer_event_created" in plan_of(ProducerEvent.objects.filter(
        created_at__lt=timezone.now()).order_by("created_at"))
    assert "producer_event_producer" in plan_of(ProducerEvent.objects.filter(
        producer=hooked_producer).order_by("-created_at"))
