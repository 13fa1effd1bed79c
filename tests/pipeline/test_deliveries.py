"""Delivery rows have one constructor, active devices one lookup and recipients one upsert, used by every
path that needs them: the route step, digest flushes, admin test sends and render failures (and, next,
replays and fallbacks). A path with its own copy drifts: its rows miss a field the others set."""
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifier.admin_tools import template_send_test
from notifier.models import Delivery, Device, Notification, NotificationType, Producer, Recipient, Template
from notifier.pipeline.deliveries import active_devices, deliveries_build
from notifier.pipeline.digest import digests_flush
from notifier.pipeline.render import RenderError, render_failed_deliveries
from notifier.pipeline.route import route_due
from notifier.services import recipient_upsert, recipients_upsert
from tests.conftest import make_reachable_user

pytestmark = pytest.mark.django_db

NOTIFIER = Path(__file__).resolve().parents[2] / "notifier"
# What a Delivery says about where and how it goes; ids, timestamps and its notification aside.
SHAPE = ("channel", "target", "device_id", "template_id", "content", "status", "status_reason", "attempts",
         "last_error", "provider", "failed_at")


def shape(delivery: Delivery) -> tuple:
    return tuple(getattr(delivery, name) for name in SHAPE)


def code_of_notifier() -> dict[str, str]:
    return {str(path.relative_to(NOTIFIER)): path.read_text() for path in NOTIFIER.rglob("*.py")
            if "migrations" not in path.parts}


@pytest.fixture
def push_type(db):
    notification_type = NotificationType.objects.create(
        key="photo_liked", category="system", default_priority="medium", default_channels=["push"],
        variables={"actor": {"required": True, "type": "string"}}, digest_window_seconds=600,
    )
    Template.objects.create(type=notification_type, channel="push", language="en", title="Likes",
                            body="{{ actor }} liked your photo")
    return notification_type


def notify(notification_type, recipient, priority="medium", **data) -> Notification:
    producer = Producer.objects.first() or Producer.create_with_key("p", ["send"])[0]
    return Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                       priority=priority, due_at=timezone.now(), data=data or {"actor": "Alice"})


class TestDeliveriesBuild:
    def test_it_makes_one_queued_delivery_per_target_at_the_notifications_priority(self, push_type):
        user = make_reachable_user()
        notification = notify(push_type, user)
        devices = active_devices([user.id])[user.id]
        template = Template.objects.get()
        now = timezone.now()

        built = deliveries_build(notification, "push", [_target(d) for d in devices], template,
                                 content={"body": "hi"}, next_attempt_at=now)

        assert [(d.target, d.device, d.priority, d.status, d.content, d.next_attempt_at) for d in built] == [
            ("ios-token-1", devices[0], "medium", "queued", {"body": "hi"}, now),
            ("android-token-1", devices[1], "medium", "queued", {"body": "hi"}, now),
        ]
        assert all(d.notification is notification and d.template == template for d in built)

    def test_a_held_delivery_carries_its_reason_and_release(self, push_type):
        user = make_reachable_user(devices=(("ios", "ios-token-1"),))
        release_at = timezone.now() + timedelta(hours=3)

        [held] = deliveries_build(notify(push_type, user), "push", [_target(user.devices.get())], Template.objects.get(),
                                  content={}, status="held", status_reason="quiet hours", next_attempt_at=release_at)

        assert (held.status, held.status_reason, held.next_attempt_at) == ("held", "quiet hours", release_at)

    def test_a_render_failure_leaves_a_failed_delivery_per_target_saying_why(self, push_type):
        user = make_reachable_user()
        now = timezone.now()

        failed = render_failed_deliveries(notify(push_type, user), "push", [_target(d) for d in user.devices.all()],
                                          Template.objects.get(), RenderError("missing required variables: actor"), now)

        assert [(d.status, d.failed_at, d.next_attempt_at, d.last_error, d.content) for d in failed] == [
            ("failed", now, now, "render failed: missing required variables: actor", {})] * 2


def _target(device):
    from notifier.channels.base import Target

    return Target(address=device.token, device=device, platform=device.platform)


class TestActiveDevices:
    def test_it_gives_each_recipients_active_devices_in_registration_order_in_one_query(self, db):
        first = make_reachable_user("u_1", devices=(("ios", "a"), ("android", "b"), ("ios", "c")))
        second = make_reachable_user("u_2", devices=(("web", "d"),))
        Device.objects.filter(token="b").update(active=False)

        with CaptureQueriesContext(connection) as queries:
            devices = active_devices([first.id, second.id, first.id])

        assert len(queries) == 1
        assert {r: [d.token for d in ds] for r, ds in devices.items()} == {first.id: ["a", "c"], second.id: ["d"]}
        assert devices[12345] == []  # a recipient with none


class TestEveryPathBuildsTheSameDelivery:
    def test_routed_digest_and_admin_test_deliveries_carry_the_same_fields(self, push_type):
        user = make_reachable_user()
        high = notify(push_type, user, priority="high")  # high priority: never digested
        digested = notify(push_type, user)
        route_due("high")
        route_due("medium")
        digests_flush(now=timezone.now() + timedelta(seconds=601))
        tested = template_send_test(Template.objects.get(), "u_42", {"actor": "Alice"})

        routed = Delivery.objects.filter(notification=high).order_by("id")
        from_digest = Delivery.objects.filter(notification=digested).order_by("id")
        from_admin = Delivery.objects.filter(notification_id=tested).order_by("id")

        assert [shape(d) for d in routed] == [shape(d) for d in from_digest] == [shape(d) for d in from_admin]
        assert [d.target for d in routed] == ["ios-token-1", "android-token-1"]
        assert [d.priority for d in (*routed, *from_digest, *from_admin)] == ["high"] * 2 + ["medium"] * 2 + ["high"] * 2

    def test_deliveries_are_built_only_by_the_constructor(self):
        builders = [name for name, code in code_of_notifier().items() if re.search(r"(?<!class )\bDelivery\(|row_new\(\s*Delivery\b", code)]

        assert builders == ["pipeline/deliveries.py"], builders

    def test_active_devices_are_looked_up_only_by_active_devices(self):
        # A lookup is a recipient's active devices; deactivating tokens by token (dispatch.targets_gone,
        # services.device_unregister) is not one.
        lookup = re.compile(r"Device\.objects\.filter\([^\n]*recipient[^\n]*active=True\)(?!\.update)")
        lookups = [name for name, code in code_of_notifier().items() if lookup.search(code)]

        assert lookups == ["pipeline/deliveries.py"], lookups


class TestRecipientsUpsert:
    def test_it_creates_the_missing_updates_what_changed_and_says_which_it_created(self, db):
        Recipient.objects.create(user_id="u_1", email="old@example.com", phone="+14155550100",
                                 sms_opted_out_at=timezone.now())

        with CaptureQueriesContext(connection) as queries:
            recipients, created = recipients_upsert([
                ("u_1", {"email": "new@example.com", "phone": "+14155550199"}),
                ("u_2", {"email": "u2@example.com"}),
                ("u_3", {}),
            ])

        assert len(queries) <= 4  # read, insert the missing, read them back, update the changed
        assert created == {"u_2", "u_3"}
        u_1 = Recipient.objects.get(user_id="u_1")
        assert (u_1.email, u_1.phone, u_1.sms_opted_out_at) == ("new@example.com", "+14155550199", None)
        assert recipients["u_2"].email == "u2@example.com" and recipients["u_3"].pk

    def test_an_unchanged_recipient_is_not_written(self, db):
        Recipient.objects.create(user_id="u_1", email="a@example.com")

        with CaptureQueriesContext(connection) as queries:
            recipient, created = recipient_upsert("u_1", {"email": "a@example.com"})

        assert len(queries) == 1 and not created and recipient.email == "a@example.com"

    def test_recipients_are_created_only_by_the_upsert(self):
        creating = re.compile(r"Recipient\.objects\.(get_or_create|update_or_create|create|bulk_create)\(")
        creators = [name for name, code in code_of_notifier().items() if creating.search(code)]

        assert creators == ["services.py"], creators
