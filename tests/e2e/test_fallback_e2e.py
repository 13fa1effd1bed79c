"""Fallback channels and escalations through a real worker, and a real beat for the escalation."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.models import Delivery, Notification
from tests.e2e.conftest import wait_until
from tests.support import scripted_provider
from tests.support.scripted_provider import script

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCRIPTED = "tests.support.scripted_provider"
PROVIDERS = {"NOTIFIER_PUSH_PROVIDERS": SCRIPTED, "NOTIFIER_SMS_PROVIDERS": SCRIPTED,
             "NOTIFIER_EMAIL_PROVIDERS": SCRIPTED}


def test_push_failing_permanently_on_every_device_falls_back_to_one_sms(api, order_type, reachable_user,
                                                                        start_worker):
    start_worker(**PROVIDERS)
    script("ios-token-1", {"kind": "permanent", "code": "BadDeviceToken", "target_gone": True})
    script("android-token-1", {"kind": "permanent", "code": "UNREGISTERED", "target_gone": True})

    response = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                  "data": {"order_id": "7"}, "channels": ["push"],
                                                  "fallback_channels": ["sms", "email"]}, format="json")
    notification_id = response.json()["notifications"][0]["id"]

    wait_until(lambda: Notification.objects.get(id=notification_id).status not in ("accepted", "processing"),
               timeout=30)
    notification = Notification.objects.get(id=notification_id)
    assert notification.status == "partially_delivered"  # push failed; the SMS reached the user
    assert [s["to"] for s in scripted_provider.sent()] == ["+14155550100"]
    fallbacks = [d for d in notification.decisions if d.get("step") == "fallback"]
    assert [(d["channel"], d["decision"]) for d in fallbacks] == [("sms", "queued")]
    assert fallbacks[0]["reason"].startswith("fallback: push failed on 2 devices (")
    assert sorted(Delivery.objects.filter(notification_id=notification_id).values_list("channel", "status")) == [
        ("push", "failed"), ("push", "failed"), ("sms", "sent")]
    shown = api.get(f"/api/v1/notifications/{notification_id}").json()
    assert shown["fallback_channels"] == ["sms", "email"]


def test_an_unread_in_app_item_escalates_to_email_on_a_real_beat_tick(api, order_type, reachable_user,
                                                                      start_worker, start_beat):
    start_worker(**PROVIDERS)
    response = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                  "data": {"order_id": "8"}, "channels": ["in_app"],
                                                  "escalate": {"channels": ["email"], "if_unread_after_seconds": 600}},
                        format="json")
    notification_id = response.json()["notifications"][0]["id"]
    wait_until(lambda: Delivery.objects.filter(notification_id=notification_id, status="delivered").exists())
    beat = start_beat(NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS=1)
    try:
        time.sleep(3)  # ticks before the escalation's moment send nothing
        notification = Notification.objects.get(id=notification_id)
        assert notification.status == "processing" and notification.escalate_at is not None
        assert scripted_provider.sent() == []

        # Time travel: the 600 s have passed and the item is still unread.
        Notification.objects.filter(id=notification_id).update(escalate_at=timezone.now() - timedelta(seconds=1))

        wait_until(lambda: Notification.objects.get(id=notification_id).status == "delivered", timeout=20)
    finally:
        beat.stop()
    assert "Sending due task release-escalations (notifier.release_escalations)" in beat.output()
    assert [s["to"] for s in scripted_provider.sent()] == ["u_42@example.com"]
