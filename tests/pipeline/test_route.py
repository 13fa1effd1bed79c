from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import Delivery, Device, Notification, NotificationStatus, Producer, Recipient, Template
from notifier.pipeline.route import route_due
from tests.conftest import make_order_type, make_reachable_user

pytestmark = pytest.mark.django_db


def make_notification(notification_type, recipient, **fields):
    producer = Producer.objects.first() or Producer.create_with_key("p", ["send"])[0]
    fields.setdefault("data", {"order_id": "42"})
    return Notification.objects.create(
        producer=producer, type=notification_type, recipient=recipient,
        priority=fields.pop("priority", "high"), due_at=fields.pop("due_at", timezone.now()), **fields,
    )


def test_it_creates_one_delivery_per_target_with_rendered_content(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)

    assert route_due("high") == 1

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PROCESSING
    deliveries = {(d.channel, d.target): d for d in notification.deliveries.all()}
    assert set(deliveries) == {
        ("push", "ios-token-1"), ("push", "android-token-1"), ("email", "u_42@example.com"),
        ("sms", "+14155550100"), ("in_app", "u_42"),
    }
    email = deliveries[("email", "u_42@example.com")]
    assert email.content["subject"] == "Order 42 shipped"
    assert email.content["body"] == "Order 42 ships with UPS."  # the variable's default
    assert all(d.status == "queued" and d.priority == "high" for d in deliveries.values())


def test_html_is_autoescaped_but_plain_text_is_not(order_type, reachable_user):
    make_notification(order_type, reachable_user, data={"order_id": "<b>&</b>"})

    route_due("high")

    email = Delivery.objects.get(channel="email")
    sms = Delivery.objects.get(channel="sms")
    assert "<b>&lt;b&gt;&amp;&lt;/b&gt;</b>" in email.content["html_body"]
    assert sms.content["body"] == "Order <b>&</b> ships with UPS."


def test_a_channel_override_limits_the_channels(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["sms"])

    route_due("high")

    assert [d.channel for d in notification.deliveries.all()] == ["sms"]


def test_inactive_devices_and_opted_out_phones_are_skipped_with_a_reason(order_type, reachable_user):
    Device.objects.update(active=False)
    Recipient.objects.update(sms_opted_out_at=timezone.now())
    notification = make_notification(order_type, reachable_user)

    route_due("high")

    notification.refresh_from_db()
    reasons = {d["channel"]: d["reason"] for d in notification.decisions if d["decision"] == "skipped"}
    assert reasons == {"push": "recipient has no active device",
                       "sms": "the SMS provider reported this number unsubscribed or invalid"}
    assert sorted(d.channel for d in notification.deliveries.all()) == ["email", "in_app"]


def test_a_channel_without_a_template_is_skipped_and_a_notification_with_no_channel_is_unroutable(db):
    notification_type = make_order_type(key="push_only", channels=("push",))
    Template.objects.all().delete()
    notification = make_notification(notification_type, make_reachable_user())

    route_due("high")

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.UNROUTABLE
    assert notification.decisions == [
        {"channel": "push", "decision": "skipped", "reason": "no active push template for type push_only"}
    ]


def test_the_recipients_language_then_its_base_then_the_types_default_is_used(db):
    notification_type = make_order_type(channels=("in_app",), languages=("en", "pt"))
    Template.objects.filter(language="pt").update(title="Pedido enviado")
    brazilian = Recipient.objects.create(user_id="br", language="pt-BR")
    german = Recipient.objects.create(user_id="de", language="de")
    make_notification(notification_type, brazilian)
    make_notification(notification_type, german)

    route_due("high")

    assert Delivery.objects.get(target="br").content["title"] == "Pedido enviado"
    assert Delivery.objects.get(target="de").content["title"] == "Order shipped"


def test_a_render_failure_is_recorded_and_fails_the_notification(db):
    notification_type = make_order_type(channels=("sms",))
    notification = make_notification(notification_type, make_reachable_user(), data={})  # order_id missing

    route_due("high")

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.decisions[0]["reason"] == "missing required variables: order_id"


def test_an_expired_notification_is_not_routed(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, expires_at=timezone.now() - timedelta(seconds=1))

    route_due("high")

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.EXPIRED
    assert not notification.deliveries.exists()


def test_only_due_notifications_of_the_tasks_priority_are_taken(order_type, reachable_user):
    make_notification(order_type, reachable_user, priority="low")
    make_notification(order_type, reachable_user, due_at=timezone.now() + timedelta(minutes=5))

    assert route_due("high") == 0
    assert route_due("low") == 1


def test_routing_a_batch_takes_a_fixed_number_of_queries(order_type, django_assert_max_num_queries):
    for i in range(100):
        make_notification(order_type, make_reachable_user(f"u{i}", devices=[("ios", f"tok{i}")]))

    with django_assert_max_num_queries(10):
        assert route_due("high") == 100

    assert Delivery.objects.count() == 400


def test_a_full_batch_wakes_the_queue_again_for_another_worker(order_type, reachable_user, clean_redis):
    for _ in range(3):
        make_notification(order_type, reachable_user)

    route_due("high", batch_size=2)

    assert clean_redis.llen("route.high") == 1  # a wake-up waits for the remaining notification
    assert route_due("high", batch_size=2) == 1
