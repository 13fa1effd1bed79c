from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import (
    Delivery,
    Device,
    Notification,
    NotificationStatus,
    NotificationType,
    Producer,
    Recipient,
    Template,
)
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


def test_a_render_failure_leaves_a_failed_delivery_per_target_that_the_api_shows(api, reachable_user):
    notification_type = make_order_type(key="two_channels", channels=("push", "sms"))
    Template.objects.filter(channel="push").update(body="Order {{ order_id|center:'5000' }}")
    notification_id = api.post("/api/v1/notifications", {"type": "two_channels", "user_id": "u_42",
                                                         "data": {"order_id": "8"}}, format="json").json()[
        "notifications"][0]["id"]

    route_due("high")

    shown = api.get(f"/api/v1/notifications/{notification_id}").json()
    by_target = {d["target"]: d for d in shown["deliveries"]}
    assert set(by_target) == {"ios-token-1", "android-token-1", "+14155550100"}
    for token in ("ios-token-1", "android-token-1"):
        assert by_target[token]["status"] == "failed" and by_target[token]["template_version"] == 1
        assert by_target[token]["last_error"] == (
            f"render failed: template {notification_type.key}/push/en v1 failed to render: "
            "|center:'5000' is over the limit of 1000")
    assert by_target["+14155550100"]["status"] == "queued"
    assert shown["status"] == "processing"  # the SMS is on its way
    assert not Delivery.objects.filter(status="failed", next_attempt_at__isnull=True).exists()


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


class TestOneBadRowNeverStallsABatch:
    """The API and admin refuse malformed preferences and types; a row that has one anyway (SQL, an old
    admin) must cost only its own notification's channel, never the batch it was routed with."""

    def test_malformed_preference_entries_count_as_absent(self, order_type):
        odd = make_reachable_user("odd", devices=[("ios", "odd-token")])
        Recipient.objects.filter(pk=odd.pk).update(
            type_preferences={"order_shipped": True, "transactional": ["sms"]},
            channel_preferences={"pigeon": True, "sms": "no"}, timezone="Mars/Olympus")
        other = make_reachable_user("other", devices=[("ios", "other-token")])
        odd_notification = make_notification(order_type, odd)
        other_notification = make_notification(order_type, other)

        assert route_due("high") == 2

        for notification in (odd_notification, other_notification):
            notification.refresh_from_db()
            assert notification.status == NotificationStatus.PROCESSING
            assert sorted(d.channel for d in notification.deliveries.all()) == ["email", "in_app", "push", "sms"]

    def test_an_unknown_channel_fails_that_channel_with_a_reason(self, order_type, reachable_user):
        faxed = make_order_type(key="faxed", channels=("sms",))
        faxed.default_channels = ["fax", "sms"]
        faxed.save()
        faxed_notification = make_notification(faxed, reachable_user)
        other_notification = make_notification(order_type, make_reachable_user("other", devices=()))

        assert route_due("high") == 2

        faxed_notification.refresh_from_db()
        assert faxed_notification.decisions[0] == {
            "channel": "fax", "decision": "failed",
            "reason": "unknown channel 'fax'; known channels: push, email, sms, in_app"}
        assert [d.channel for d in faxed_notification.deliveries.all()] == ["sms"]
        assert other_notification.deliveries.count() == 3  # email, sms, in_app: it has no device

    @pytest.mark.parametrize("variables", [{"order_id": "required", "carrier": {"default": "DHL"}}, ["order_id"]])
    def test_a_malformed_variables_schema_is_read_as_no_rules(self, reachable_user, variables):
        notification_type = make_order_type(key="odd_schema", channels=("sms",))
        NotificationType.objects.filter(pk=notification_type.pk).update(variables=variables)
        notification = make_notification(notification_type, reachable_user, data={"order_id": "9"})

        route_due("high")

        expected = "DHL" if isinstance(variables, dict) else ""
        assert notification.deliveries.get().content["body"] == f"Order 9 ships with {expected}."

    def test_the_api_accepts_notifications_of_a_type_with_a_malformed_schema(self, api, reachable_user):
        notification_type = make_order_type(key="odd_schema", channels=("sms",))
        NotificationType.objects.filter(pk=notification_type.pk).update(variables={"order_id": "required"})

        response = api.post("/api/v1/notifications", {"type": "odd_schema", "user_id": "u_42",
                                                      "data": {"order_id": "1"}}, format="json")

        assert response.status_code == 202

    def test_an_unexpected_error_fails_only_its_own_notification(self, order_type, monkeypatch):
        from notifier.pipeline import route
        from notifier.pipeline.preferences import ChannelVerdict

        def verdict(recipient, notification_type, channel):
            if recipient.user_id == "cursed":
                raise RuntimeError("something no one foresaw")
            return ChannelVerdict(True)

        monkeypatch.setattr(route, "channel_verdict", verdict)
        cursed = make_notification(order_type, make_reachable_user("cursed", devices=()))
        fine = make_notification(order_type, make_reachable_user("fine", devices=()))

        assert route_due("high") == 2

        cursed.refresh_from_db()
        fine.refresh_from_db()
        assert cursed.status == NotificationStatus.FAILED
        assert cursed.decisions == [{"channel": "*", "decision": "failed",
                                     "reason": "routing error: RuntimeError: something no one foresaw"}]
        assert fine.status == NotificationStatus.PROCESSING and fine.deliveries.count() == 3
