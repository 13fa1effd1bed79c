"""Cancel: every delivery not yet handed to a provider is stopped, what a worker holds finishes and is never
sent again, and the answer says which is which."""
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifier.models import Delivery, DeliveryStatus, DigestBatch, Notification, NotificationStatus, Producer
from notifier.pipeline import cancel as cancel_module
from notifier.pipeline import route as route_module
from notifier.pipeline.cancel import notification_cancel, notifications_cancel_by_key
from notifier.pipeline.digest import digests_flush
from notifier.pipeline.dispatch import deliver_due, deliveries_claim, deliveries_send
from notifier.pipeline.escalation import release_due_escalations
from notifier.pipeline.route import route_due
from notifier.pipeline.sweep import release_expired_claims
from tests.conftest import make_reachable_user
from tests.pipeline.test_digest import like, photo_liked  # noqa: F401 (a fixture)
from tests.pipeline.test_escalation import escalating, time_travel_to_escalation
from tests.pipeline.test_route import make_notification
from tests.support import scripted_provider
from tests.support.scripted_provider import script

pytestmark = pytest.mark.django_db

SCRIPTED = "tests.support.scripted_provider"


@pytest.fixture
def scripted(settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": [SCRIPTED], "email": [SCRIPTED], "sms": [SCRIPTED]}


def notify(notification_type, recipient, producer, **fields):
    return Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                       priority="high", due_at=timezone.now(), data={"order_id": "42"}, **fields)


def producer_of(notification):
    return Producer.objects.get(pk=notification.producer_id)


def cancel(notification):
    return notification_cancel(producer_of(notification), notification.id)


def targets(entries):
    return sorted((e["channel"], e["target"]) for e in entries)


def test_a_notification_not_routed_yet_is_cancelled_whole_and_never_routed(order_type, reachable_user):
    accepted = make_notification(order_type, reachable_user)
    scheduled = make_notification(order_type, reachable_user, status=NotificationStatus.SCHEDULED,
                                  due_at=timezone.now() + timedelta(hours=1))

    answers = [cancel(accepted), cancel(scheduled)]

    assert [a["status"] for a in answers] == ["cancelled", "cancelled"]
    assert all(not a["cancelled"] and not a["already_sent"] and not a["in_flight"] for a in answers)
    assert route_due("high", batch_size=10) == 0
    assert not Delivery.objects.exists()
    accepted.refresh_from_db()
    assert accepted.status == "cancelled" and accepted.completed_at and accepted.cancelled_at


def test_it_cancels_queued_retrying_and_held_deliveries_and_reports_what_had_gone_out(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)
    route_due("high")
    deliver_due("in_app", "high")  # delivered: gone out
    later = timezone.now() + timedelta(minutes=5)
    Delivery.objects.filter(channel="sms").update(status=DeliveryStatus.HELD, next_attempt_at=later)
    Delivery.objects.filter(channel="email").update(attempts=1, next_attempt_at=later)  # a retry, backing off

    answer = cancel(notification)

    assert {(e["channel"], e["was"]) for e in answer["cancelled"]} == {
        ("push", "queued"), ("email", "retrying"), ("sms", "held")}
    assert len(answer["cancelled"]) == 4  # two devices
    assert all(e["status"] == "cancelled" for e in answer["cancelled"])
    assert [(e["channel"], e["status"]) for e in answer["already_sent"]] == [("in_app", "delivered")]
    assert answer["in_flight"] == [] and answer["not_sent"] == []
    assert answer["status"] == "partially_delivered"
    assert set(Delivery.objects.exclude(channel="in_app").values_list("status", flat=True)) == {"cancelled"}
    assert Delivery.objects.get(channel="sms").status_reason == "cancelled by the producer"


def test_a_routed_notification_with_nothing_sent_ends_cancelled_and_nothing_is_sent(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)
    route_due("high")

    answer = cancel(notification)

    assert answer["status"] == "cancelled"
    assert len(answer["cancelled"]) == 5
    for channel in ("push", "email", "sms", "in_app"):
        assert deliver_due(channel, "high") == 0
    notification.refresh_from_db()
    assert notification.status == "cancelled" and notification.completed_at


def test_cancelling_again_cancels_nothing_new_and_reports_the_same_sent_deliveries(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)
    route_due("high")
    deliver_due("push", "high")
    first = cancel(notification)

    second = cancel(notification)

    assert second["cancelled"] == []
    assert second["already_sent"] == first["already_sent"] and len(first["already_sent"]) == 2
    assert targets(second["not_sent"]) == targets(first["cancelled"])
    assert {e["status"] for e in second["not_sent"]} == {"cancelled"}
    assert (second["status"], second["cancelled_at"]) == (first["status"], first["cancelled_at"])


def test_a_delivery_a_worker_holds_finishes_and_is_reported_in_flight(scripted, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push", "email"])
    route_due("high")
    claimed = deliveries_claim("push", "high", 10)  # a worker has both push deliveries, and is sending

    answer = cancel(notification)

    assert targets(answer["in_flight"]) == [("push", "android-token-1"), ("push", "ios-token-1")]
    assert {e["status"] for e in answer["in_flight"]} == {"sending"}
    assert targets(answer["cancelled"]) == [("email", "u_42@example.com")]
    assert answer["status"] == "processing"

    deliveries_send(claimed)

    assert sorted(s["to"] for s in scripted_provider.sent()) == ["android-token-1", "ios-token-1"]
    notification.refresh_from_db()
    assert notification.status == "partially_delivered"  # push went out, email was cancelled


def test_a_delivery_in_flight_at_the_cancel_is_not_retried_after_a_transient_error(scripted, order_type,
                                                                                  reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"])
    route_due("high")
    script("ios-token-1", {"kind": "transient"})
    script("android-token-1", {"kind": "transient"})
    claimed = deliveries_claim("push", "high", 10)
    cancel(notification)

    deliveries_send(claimed)

    assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}
    notification.refresh_from_db()
    assert notification.status == "cancelled"
    assert deliver_due("push", "high") == 0


def test_a_delivery_back_in_the_queue_after_a_cancel_is_never_sent(scripted, settings, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"])
    route_due("high")
    deliveries_claim("push", "high", 10)  # claimed by a worker that then dies
    cancel(notification)
    Delivery.objects.update(claimed_at=timezone.now() - timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS + 1))
    assert release_expired_claims() == 2  # back in the queue

    assert deliver_due("push", "high") == 2

    assert scripted_provider.sent() == []
    assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}
    notification.refresh_from_db()
    assert notification.status == "cancelled"


def test_another_producers_notification_is_not_found_and_left_alone(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)
    other, _ = Producer.create_with_key("other", ["send"])

    assert notification_cancel(other, notification.id) is None
    assert notification_cancel(other, "not-a-uuid") is None
    notification.refresh_from_db()
    assert notification.status == "accepted" and notification.cancelled_at is None


class TestByIdempotencyKey:
    def notifications(self, order_type, count, key="order-789", producer=None):
        producer = producer or Producer.objects.first() or Producer.create_with_key("p", ["send"])[0]
        names = [f"{producer.name}-{key}-{i}" for i in range(count)]
        return [notify(order_type, make_reachable_user(name, devices=[("ios", f"t-{name}")]), producer,
                       idempotency_key=key, channels=["push"])
                for name in names]

    def test_it_cancels_every_notification_of_the_request_and_only_those(self, order_type):
        batch = self.notifications(order_type, 3)
        other_request = self.notifications(order_type, 1, key="order-790")
        other, _ = Producer.create_with_key("other", ["send"])
        other_producer = self.notifications(order_type, 1, producer=other)  # the same key, another producer
        route_due("high")

        answers = notifications_cancel_by_key(batch[0].producer, "order-789")

        assert sorted(a["id"] for a in answers) == sorted(n.id for n in batch)
        assert all(a["status"] == "cancelled" and len(a["cancelled"]) == 1 for a in answers)
        for untouched in (*other_request, *other_producer):
            assert set(untouched.deliveries.values_list("status", flat=True)) == {"queued"}

    def test_an_unknown_or_blank_key_cancels_nothing(self, order_type):
        [notification] = self.notifications(order_type, 1)
        keyless = notify(order_type, notification.recipient, notification.producer)

        assert notifications_cancel_by_key(notification.producer, "order-000") == []
        assert notifications_cancel_by_key(notification.producer, "") == []
        keyless.refresh_from_db()
        assert keyless.status == "accepted"

    def test_a_thousand_notifications_cost_a_fixed_number_of_queries(self, order_type, django_assert_max_num_queries):
        producer = Producer.create_with_key("bulk", ["send"])[0]
        self.notifications(order_type, 1000, key="big", producer=producer)
        route_due("high", batch_size=1000)
        Delivery.objects.filter(id__in=Delivery.objects.order_by("id").values("id")[:300]).update(
            status=DeliveryStatus.SENT)

        with django_assert_max_num_queries(16):  # the deliveries' move: a locking read and their events
            answers = notifications_cancel_by_key(producer, "big")

        assert len(answers) == 1000
        assert sum(len(a["cancelled"]) for a in answers) == 700
        assert sum(len(a["already_sent"]) for a in answers) == 300


class TestDigests:
    def likes(self, notification_type, user, actors):
        notifications = [like(notification_type, user, actor) for actor in actors]
        route_due("medium")
        deliver_due("in_app", "medium")
        return notifications

    def test_one_in_an_open_digest_is_taken_out_and_the_digest_goes_without_it(self, photo_liked):
        user = make_reachable_user(devices=(("ios", "ios-token-1"),))
        bob, carol, alice = self.likes(photo_liked, user, ["Bob", "Carol", "Alice"])

        answer = cancel(carol)

        batch = DigestBatch.objects.get()
        assert answer["digests"] == [{"channel": "push", "digest_batch": batch.id, "removed": True,
                                      "digest_notification_id": None}]
        assert batch.count == 2 and [i["data"]["actor"] for i in batch.items] == ["Bob", "Alice"]
        carol.refresh_from_db()
        assert [d["decision"] for d in carol.decisions if d["channel"] == "push"] == ["cancelled"]
        digests_flush(now=timezone.now() + timedelta(seconds=601))
        [push] = Delivery.objects.filter(channel="push")
        assert push.content["body"] == "Alice and 1 others liked your photo"

    def test_cancelling_the_newest_hangs_the_digest_on_the_one_before(self, photo_liked):
        user = make_reachable_user(devices=(("ios", "ios-token-1"),))
        bob, alice = self.likes(photo_liked, user, ["Bob", "Alice"])

        cancel(alice)
        digests_flush(now=timezone.now() + timedelta(seconds=601))

        [push] = Delivery.objects.filter(channel="push")
        assert push.notification_id == bob.id
        assert push.content["body"] == "Bob liked your photo"

    def test_a_digest_left_empty_is_closed_unsent_and_a_digested_only_notification_ends_cancelled(self, photo_liked):
        photo_liked.default_channels = ["push"]
        photo_liked.save()
        user = make_reachable_user(devices=(("ios", "ios-token-1"),))
        [bob] = self.likes(photo_liked, user, ["Bob"])
        assert Notification.objects.get().status == "digested"

        answer = cancel(bob)

        assert answer["status"] == "cancelled"
        assert DigestBatch.objects.get().status == DigestBatch.FLUSHED
        assert digests_flush(now=timezone.now() + timedelta(seconds=601)) == 0
        assert not Delivery.objects.exists()
        assert cancel(bob)["digests"] == answer["digests"]  # again: the same answer

    def test_a_closed_digest_goes_as_made_unless_its_newest_notification_is_cancelled(self, photo_liked):
        user = make_reachable_user(devices=(("ios", "ios-token-1"),))
        bob, alice = self.likes(photo_liked, user, ["Bob", "Alice"])
        digests_flush(now=timezone.now() + timedelta(seconds=601))
        batch = DigestBatch.objects.get()

        older = cancel(bob)

        assert older["digests"] == [{"channel": "push", "digest_batch": batch.id, "removed": False,
                                     "digest_notification_id": alice.id}]
        assert Delivery.objects.get(channel="push").status == "queued"

        newest = cancel(alice)

        assert [e["channel"] for e in newest["cancelled"]] == ["push"]
        assert deliver_due("push", "medium") == 0


@pytest.mark.django_db(transaction=True)
class TestRaces:
    def pause(self, monkeypatch, module, name):
        """Make `module.name` wait, inside its caller's transaction, until released; returns (reached, release)."""
        reached, release = threading.Event(), threading.Event()
        original = getattr(module, name)

        def paused(*args, **kwargs):
            reached.set()
            assert release.wait(10)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, paused)
        return reached, release

    def in_thread(self, function, *args):
        result = {}

        def run():
            try:
                result["value"] = function(*args)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread, result

    def test_a_cancel_during_routing_waits_and_then_cancels_every_delivery_the_route_step_made(
            self, monkeypatch, order_type, reachable_user):
        notification = make_notification(order_type, reachable_user)
        # The route step has locked the notification and is deciding its channels.
        reached, release = self.pause(monkeypatch, route_module, "notifications_route")
        router, _ = self.in_thread(route_due, "high")
        assert reached.wait(10)

        canceller, answer = self.in_thread(cancel, notification)
        time.sleep(0.5)
        assert canceller.is_alive()  # it waits for the route step's lock
        release.set()
        router.join(10)
        canceller.join(10)

        assert len(answer["value"]["cancelled"]) == 5
        assert answer["value"]["status"] == "cancelled"
        assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}

    def test_a_cancel_that_locks_first_leaves_the_route_step_nothing_to_route(
            self, monkeypatch, order_type, reachable_user):
        notification = make_notification(order_type, reachable_user)
        # The cancel holds the notification's lock and has not committed yet.
        reached, release = self.pause(monkeypatch, cancel_module, "notifications_refresh_status")
        canceller, answer = self.in_thread(cancel, notification)
        assert reached.wait(10)

        assert route_due("high") == 0  # SKIP LOCKED: it does not wait, and does not route it
        release.set()
        canceller.join(10)

        assert route_due("high") == 0
        assert not Delivery.objects.exists()
        assert answer["value"]["status"] == "cancelled"

    def test_a_cancel_racing_a_worker_for_the_same_deliveries_never_wins_one_the_worker_claimed(
            self, order_type):
        producer = Producer.create_with_key("racer", ["send"])[0]
        for i in range(60):
            notify(order_type, make_reachable_user(f"r{i}", devices=[("ios", f"tok-{i}")]), producer,
                   idempotency_key="race", channels=["push"])
        route_due("high", batch_size=100)
        start = threading.Barrier(2)
        claims = []

        def claim_in_small_batches():
            start.wait()
            while batch := deliveries_claim("push", "high", 5):
                claims.extend(d.id for d in batch)
            return claims

        def cancel_all():
            start.wait()
            time.sleep(0.01)  # let the worker take a few batches first
            return notifications_cancel_by_key(producer, "race")

        worker, _ = self.in_thread(claim_in_small_batches)
        canceller, answer = self.in_thread(cancel_all)
        worker.join(20)
        canceller.join(20)

        cancelled = {e["delivery_id"] for a in answer["value"] for e in a["cancelled"]}
        in_flight = {e["delivery_id"] for a in answer["value"] for e in a["in_flight"]}
        assert cancelled.isdisjoint(claims)
        assert in_flight == set(claims)  # each one the worker won is reported as in flight
        assert len(cancelled) + len(set(claims)) == 60
        statuses = dict(Delivery.objects.values_list("id", "status"))
        assert all(statuses[i] == "sending" for i in claims)
        assert all(statuses[i] == "cancelled" for i in cancelled)


def test_a_cancel_ends_a_pending_escalation_and_the_notification_closes(producer, order_type, reachable_user):
    notification = escalating(order_type, reachable_user)
    Notification.objects.filter(id=notification.id).update(producer=producer)

    notification_cancel(producer, notification.id)

    notification.refresh_from_db()
    assert notification.escalate_at is None
    assert notification.status == NotificationStatus.DELIVERED  # closed now, not when the delay would end
    time_travel_to_escalation()
    release_due_escalations()
    assert not Delivery.objects.filter(notification=notification, channel="email").exists()  # never escalated
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DELIVERED  # its one delivery, the in-app item, went
    (ended,) = [d for d in notification.decisions if d["channel"] == "email" and d["decision"] == "cancelled"]
    assert ended["reason"] == "escalation cancelled with the notification"
