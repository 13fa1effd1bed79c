"""Fallback channels: when a notification's channels reach no one, the next fallback channel, once each."""

import pytest

from notifier.models import Delivery, DeliveryStatus, Device, NotificationStatus, Recipient
from notifier.pipeline.dispatch import deliver_due, notifications_refresh_status
from notifier.pipeline.route import route_due
from notifier.producer_webhooks import producers_with_webhook
from tests.pipeline.test_route import make_notification
from tests.support import scripted_provider
from tests.support.concurrency import record_at_once
from tests.support.scripted_provider import script

pytestmark = pytest.mark.django_db

SCRIPTED = "tests.support.scripted_provider"
REFUSED = {"kind": "permanent", "code": "BadDeviceToken"}


@pytest.fixture
def scripted(settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": [SCRIPTED], "email": [SCRIPTED], "sms": [SCRIPTED]}


def fallbacks(notification) -> list[dict]:
    notification.refresh_from_db()
    return [d for d in notification.decisions if d.get("step") == "fallback"]


def channels_of(notification) -> list[str]:
    return sorted(Delivery.objects.filter(notification=notification).values_list("channel", flat=True))


def test_when_every_primary_delivery_fails_the_fallback_channel_is_sent(scripted, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=["sms"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    route_due("high")

    deliver_due("push", "high")

    (decision,) = fallbacks(notification)
    assert decision["channel"] == "sms" and decision["decision"] == "queued"
    assert decision["reason"] == "fallback: push failed on 2 devices (scripted permanent: BadDeviceToken: scripted refusal)"
    assert notification.status == NotificationStatus.PROCESSING
    deliver_due("sms", "high")
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PARTIALLY_DELIVERED
    assert [m["to"] for m in scripted_provider.sent()] == ["+14155550100"]


def test_a_dead_primary_delivery_falls_back_and_the_reason_says_it_died(scripted, order_type, settings):
    settings.NOTIFIER_RETRY_POLICY = {**settings.NOTIFIER_RETRY_POLICY,
                                      "high": {**settings.NOTIFIER_RETRY_POLICY["high"], "max_attempts": 1}}
    recipient = Recipient.objects.create(user_id="u_1", email="u_1@example.com")
    notification = make_notification(order_type, recipient, channels=["email"], fallback_channels=["in_app"])
    script("u_1@example.com", {"kind": "transient"})
    route_due("high")

    deliver_due("email", "high")

    (decision,) = fallbacks(notification)
    assert decision["reason"] == ("fallback: email failed on 1 address "
                                  "(scripted transient: 503: scripted outage (gave up after 1 attempts))")


def test_no_fallback_when_any_primary_delivery_succeeded(scripted, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=["sms"])
    script("ios-token-1", REFUSED)
    route_due("high")

    deliver_due("push", "high")

    assert fallbacks(notification) == []
    assert notification.status == NotificationStatus.PARTIALLY_DELIVERED
    assert channels_of(notification) == ["push", "push"]


def test_two_fallbacks_are_tried_in_order_once_each(scripted, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"],
                                     fallback_channels=["sms", "email"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    script("+14155550100", {"kind": "permanent", "code": "21211"})
    route_due("high")

    deliver_due("push", "high")
    deliver_due("sms", "high")
    deliver_due("email", "high")
    notifications_refresh_status({notification.id})  # a late refresh starts nothing more

    assert [(d["channel"], d["reason"]) for d in fallbacks(notification)] == [
        ("sms", "fallback: push failed on 2 devices (scripted permanent: BadDeviceToken: scripted refusal)"),
        ("email", "fallback: sms failed on 1 number (scripted permanent: 21211: scripted refusal)"),
    ]
    assert channels_of(notification) == ["email", "push", "push", "sms"]
    assert notification.status == NotificationStatus.PARTIALLY_DELIVERED


def test_a_primary_channel_with_no_target_falls_back_at_routing(order_type, reachable_user):
    Device.objects.update(active=False)
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=["sms"])

    route_due("high")

    (decision,) = fallbacks(notification)
    assert (decision["channel"], decision["decision"]) == ("sms", "queued")
    assert decision["reason"] == "fallback: push skipped: recipient has no active device"
    assert notification.status == NotificationStatus.PROCESSING
    assert channels_of(notification) == ["sms"]


def test_a_fallback_with_no_target_passes_on_to_the_next_at_routing(order_type):
    recipient = Recipient.objects.create(user_id="u_2", email="u_2@example.com")  # no device, no phone
    notification = make_notification(order_type, recipient, channels=["push"], fallback_channels=["sms", "email"])

    route_due("high")

    assert [(d["channel"], d["decision"]) for d in fallbacks(notification)] == [("sms", "skipped"),
                                                                             ("email", "queued")]
    assert fallbacks(notification)[1]["reason"] == "fallback: sms skipped: recipient has no phone number"
    assert channels_of(notification) == ["email"]


def test_when_the_fallback_fails_too_the_notification_fails_with_the_whole_trail(scripted, order_type,
                                                                                reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=["sms"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    script("+14155550100", {"kind": "permanent", "code": "21211"})
    route_due("high")

    deliver_due("push", "high")
    deliver_due("sms", "high")

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert [(d["channel"], d["decision"], d.get("step")) for d in notification.decisions] == [
        ("push", "queued", None), ("sms", "queued", "fallback")]
    assert set(Delivery.objects.filter(notification=notification).values_list("status", flat=True)) == {"failed"}


def test_the_fallback_follows_the_users_preferences_and_an_opted_out_channel_passes_on(scripted, order_type,
                                                                                      reachable_user):
    Recipient.objects.filter(pk=reachable_user.pk).update(channel_preferences={"sms": False})
    notification = make_notification(order_type, reachable_user, channels=["push"],
                                     fallback_channels=["sms", "email"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    route_due("high")

    deliver_due("push", "high")

    assert [(d["channel"], d["decision"]) for d in fallbacks(notification)] == [("sms", "suppressed"),
                                                                             ("email", "queued")]
    assert channels_of(notification) == ["email", "push", "push"]


def test_only_suppressed_primary_channels_do_not_fall_back(order_type, reachable_user):
    Recipient.objects.filter(pk=reachable_user.pk).update(channel_preferences={"push": False})
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=["sms"])

    route_due("high")

    assert fallbacks(notification) == []
    assert notification.status == NotificationStatus.SUPPRESSED


def test_a_cancelled_delivery_stops_the_fallback(scripted, order_type, reachable_user):
    notification = make_notification(order_type, reachable_user, channels=["push", "email"],
                                     fallback_channels=["sms"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    route_due("high")
    Delivery.objects.filter(notification=notification, channel="email").update(status=DeliveryStatus.CANCELLED)

    deliver_due("push", "high")

    assert fallbacks(notification) == []
    assert "sms" not in channels_of(notification)


def test_the_types_default_fallback_is_used_without_the_channels_the_notification_uses(scripted, order_type,
                                                                                     reachable_user):
    order_type.default_fallback_channels = ["push", "sms"]
    order_type.save()
    notification = make_notification(order_type, reachable_user, channels=["push"])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    route_due("high")
    notification.refresh_from_db()
    assert notification.fallback_channels == ["sms"]  # stored when routed, without push

    deliver_due("push", "high")

    assert [d["channel"] for d in fallbacks(notification)] == ["sms"]


def test_an_empty_fallback_list_overrides_the_types_default(scripted, order_type, reachable_user):
    order_type.default_fallback_channels = ["sms"]
    order_type.save()
    notification = make_notification(order_type, reachable_user, channels=["push"], fallback_channels=[])
    script("ios-token-1", REFUSED)
    script("android-token-1", REFUSED)
    route_due("high")

    deliver_due("push", "high")

    assert fallbacks(notification) == []
    assert notification.status == NotificationStatus.FAILED


def test_starting_fallbacks_costs_a_fixed_number_of_queries(scripted, order_type, django_assert_max_num_queries):
    for index in range(10):
        recipient = Recipient.objects.create(user_id=f"u_{index}", phone=f"+1415555{index:04d}")
        Device.objects.create(recipient=recipient, platform="ios", token=f"token-{index}")
        make_notification(order_type, recipient, channels=["push"], fallback_channels=["sms"])
        script(f"token-{index}", REFUSED)
    route_due("high")

    producers_with_webhook()  # loaded once per process and NOTIFIER_PROCESS_CACHE_SECONDS, not per batch
    with django_assert_max_num_queries(21):
        deliver_due("push", "high")

    assert Delivery.objects.filter(channel="sms", status="queued").count() == 10


@pytest.mark.django_db(transaction=True)
def test_two_workers_recording_the_last_two_failures_at_once_start_one_fallback(order_type):
    recipient = Recipient.objects.create(user_id="u_race", phone="+14155550100")
    for token in ("ios-1", "ios-2"):
        Device.objects.create(recipient=recipient, platform="ios", token=token)
    notification = make_notification(order_type, recipient, channels=["push"], fallback_channels=["sms"])
    route_due("high")
    deliveries = list(Delivery.objects.filter(notification=notification))
    assert len(deliveries) == 2
    Delivery.objects.filter(notification=notification).update(status=DeliveryStatus.SENDING)
    record_at_once(notification, deliveries, status=DeliveryStatus.FAILED, last_error="refused")
    assert [d["channel"] for d in fallbacks(notification)] == ["sms"]
    assert Delivery.objects.filter(notification=notification, channel="sms", status="queued").count() == 1
    assert notification.status == NotificationStatus.PROCESSING
