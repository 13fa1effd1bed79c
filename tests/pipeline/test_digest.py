"""Digests: a user's notifications of a digestible type within a window become one delivery per channel,
while the inbox still shows each of them."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifier.models import Delivery, DigestBatch, InboxItem, Notification, NotificationStatus, NotificationType, Producer, Template
from notifier.pipeline.digest import digests_flush
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_reachable_user

pytestmark = pytest.mark.django_db

LIKED = "{{ actor }}{% if digest.others %} and {{ digest.others }} others{% endif %} liked your photo"


@pytest.fixture
def photo_liked(db):
    notification_type = NotificationType.objects.create(
        key="photo_liked", category="system", default_priority="medium", default_channels=["push", "in_app"],
        variables={"actor": {"required": True, "type": "string"}}, digest_window_seconds=600,
    )
    for channel in ("push", "in_app"):
        Template.objects.create(type=notification_type, channel=channel, language="en", title="Likes", body=LIKED)
    return notification_type


def like(notification_type, recipient, actor, priority="medium"):
    producer = Producer.objects.first() or Producer.create_with_key("p", ["send"])[0]
    return Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                       priority=priority, due_at=timezone.now(), data={"actor": actor})


def test_likes_within_the_window_become_one_push_saying_how_many_and_the_inbox_keeps_each(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    for actor in ("Bob", "Carol", "Dan", "Erin", "Alice"):
        like(photo_liked, user, actor)

    route_due("medium")
    deliver_due("in_app", "medium")

    assert Delivery.objects.filter(channel="push").count() == 0
    assert InboxItem.objects.filter(recipient=user).count() == 5
    assert sorted(InboxItem.objects.values_list("body", flat=True))[0] == "Alice liked your photo"
    batch = DigestBatch.objects.get()
    assert (batch.count, batch.status, batch.channel) == (5, "open", "push")

    flushed = digests_flush(now=timezone.now() + timedelta(seconds=601))

    [push] = Delivery.objects.filter(channel="push")
    assert flushed == 1
    assert push.content["body"] == "Alice and 4 others liked your photo"
    assert push.notification.data == {"actor": "Alice"}
    deliver_due("push", "medium")
    push.refresh_from_db()
    assert push.status == "delivered"


def test_a_window_is_flushed_exactly_once(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob")
    route_due("medium")
    later = timezone.now() + timedelta(seconds=601)

    assert digests_flush(now=later) == 1
    assert digests_flush(now=later) == 0
    assert Delivery.objects.filter(channel="push").count() == 1
    assert DigestBatch.objects.get().status == "flushed"


def test_nothing_is_sent_before_the_window_ends_and_a_new_window_opens_after(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob")
    route_due("medium")

    assert digests_flush(now=timezone.now() + timedelta(seconds=300)) == 0
    digests_flush(now=timezone.now() + timedelta(seconds=601))
    like(photo_liked, user, "Carol")
    route_due("medium")

    assert list(DigestBatch.objects.order_by("id").values_list("status", "count")) == [("flushed", 1), ("open", 1)]


def test_a_single_notification_in_a_window_reads_as_itself(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob")
    route_due("medium")

    digests_flush(now=timezone.now() + timedelta(seconds=601))

    assert Delivery.objects.get(channel="push").content["body"] == "Bob liked your photo"


def test_critical_types_and_high_priority_are_never_digested(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob", priority="high")
    NotificationType.objects.filter(pk=photo_liked.pk).update(critical=True)
    photo_liked.refresh_from_db()
    like(photo_liked, user, "Carol")

    route_due("high")
    route_due("medium")

    assert Delivery.objects.filter(channel="push").count() == 2
    assert not DigestBatch.objects.exists()


def test_the_users_daily_setting_sets_the_window(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    user.digest = "daily"
    user.save()
    like(photo_liked, user, "Bob")

    route_due("medium")

    batch = DigestBatch.objects.get()
    assert timedelta(hours=23, minutes=59) < batch.window_ends_at - timezone.now() <= timedelta(hours=24)


def test_a_notification_sent_only_as_a_digest_is_marked_digested_with_the_reason(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    notification = like(photo_liked, user, "Bob")
    Notification.objects.filter(pk=notification.pk).update(channels=["push"])

    route_due("medium")

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DIGESTED
    assert notification.decisions[0]["decision"] == "digested" and notification.decisions[0]["window"] == 600


def test_an_admin_producer_makes_a_type_digestible_through_the_api(admin_api):
    response = admin_api.post("/api/v1/notification-types", {
        "key": "comment_added", "default_channels": ["push"], "digest_window_seconds": 900,
    }, format="json")

    assert response.status_code == 201 and response.json()["digest_window_seconds"] == 900
    assert NotificationType.objects.get(key="comment_added").digest_window_seconds == 900


def test_a_digest_whose_window_ends_in_quiet_hours_waits_for_them_to_end(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob")
    route_due("medium")
    flush_at = timezone.now() + timedelta(seconds=601)
    local = flush_at.astimezone(timezone.get_fixed_timezone(0))
    user.timezone = "UTC"
    user.quiet_hours_start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    user.quiet_hours_end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    user.save()

    digests_flush(now=flush_at)

    push = Delivery.objects.get(channel="push")
    assert push.status == "held" and push.status_reason.startswith("held for quiet hours until")
    assert push.next_attempt_at > flush_at


def test_beat_runs_the_digest_flush_and_the_inbox_purge_as_registered_tasks(photo_liked):
    import celeryconfig
    from notifier.tasks import flush_digests
    from notifier_project.celery import app

    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    like(photo_liked, user, "Bob")
    route_due("medium")
    DigestBatch.objects.update(window_ends_at=timezone.now())

    tasks = {entry["task"] for entry in celeryconfig.beat_schedule.values()}

    assert {"notifier.flush_digests", "notifier.purge_inbox"} <= tasks
    assert tasks <= set(app.tasks)
    assert flush_digests.apply().get() == 1 and Delivery.objects.filter(channel="push").count() == 1


def test_a_digest_that_fails_to_render_leaves_a_failed_delivery_saying_why(photo_liked):
    user = make_reachable_user(devices=(("ios", "ios-token-1"),))
    notification = like(photo_liked, user, "Bob")
    route_due("medium")
    deliver_due("in_app", "medium")
    status_before = Notification.objects.get(pk=notification.pk).status
    Template.objects.filter(channel="push").update(body="{% lorem digest.count|add:100 w %}")

    assert digests_flush(now=timezone.now() + timedelta(seconds=601)) == 1

    push = Delivery.objects.get(channel="push")
    assert push.status == "failed" and push.target == "ios-token-1"
    assert push.last_error.endswith("failed to render: {% lorem 101 %} is over the limit of 50")
    notification = push.notification
    assert notification.decisions[-1]["decision"] == "failed"
    assert notification.status == status_before != NotificationStatus.PROCESSING  # nothing went in flight
    assert DigestBatch.objects.get().status == "flushed"


@pytest.mark.django_db(transaction=True)
def test_two_beat_ticks_flushing_at_once_send_each_digest_exactly_once(photo_liked):
    users = [make_reachable_user(f"u{i}", devices=((("ios", f"token-{i}"),))) for i in range(20)]
    for user in users:
        like(photo_liked, user, "Bob")
        like(photo_liked, user, "Carol")
    route_due("medium")
    later = timezone.now() + timedelta(seconds=601)
    start = threading.Barrier(2)
    flushed, errors = [], []

    def tick():
        start.wait()
        try:
            for _ in range(3):  # small batches, so the two ticks interleave
                flushed.append(digests_flush(now=later, batch_size=7))
        except Exception as error:  # e.g. the unique delivery index refusing a second send of a batch
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(flushed) == 20
    assert Delivery.objects.filter(channel="push").count() == 20
    assert set(Delivery.objects.filter(channel="push").values_list("content__body", flat=True)) == {
        "Carol and 1 others liked your photo"}
    assert not DigestBatch.objects.filter(status="open").exists()
    assert DigestBatch.objects.filter(delivery__isnull=True).count() == 0


def test_one_flush_sends_every_window_that_has_ended_in_batches_of_set_based_writes(
    photo_liked, django_assert_max_num_queries
):
    for i in range(12):
        like(photo_liked, make_reachable_user(f"u{i}", devices=((("ios", f"token-{i}"),))), "Bob")
    route_due("medium")

    # 3 batches of 5, 5 and 2; each: lock, templates, devices, deliveries, batches, notifications, and
    # its savepoint; then one query finds nothing more.
    with django_assert_max_num_queries(3 * 8 + 1):
        flushed = digests_flush(now=timezone.now() + timedelta(seconds=601), batch_size=5)

    assert flushed == 12
    assert not DigestBatch.objects.filter(status="open").exists()
    assert Delivery.objects.filter(channel="push").count() == 12
