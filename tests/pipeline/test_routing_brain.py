"""Preferences, quiet hours and rate limits in the route step, and the release of held deliveries."""
import threading
from datetime import time, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from notifier.models import Delivery, DeliveryStatus, Notification, NotificationStatus, Recipient
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.holds import release_due_holds
from notifier.pipeline.quiet_hours import quiet_hours_release_at
from notifier.pipeline.rate_limits import KEY_PREFIX, LimitCheck, rate_limits_check
from notifier.pipeline.route import route_due
from tests.api.test_health import closed_port
from tests.conftest import make_order_type, make_reachable_user
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


def reasons(notification):
    notification.refresh_from_db()
    return {d["channel"]: (d["decision"], d["reason"]) for d in notification.decisions}


def route(priority="high"):
    while route_due(priority):
        pass


class TestPreferences:
    def test_a_channel_the_user_disabled_is_suppressed_with_the_reason(self, order_type, reachable_user):
        Recipient.objects.update(channel_preferences={"sms": False})
        notification = make_notification(order_type, reachable_user)

        route()

        assert reasons(notification)["sms"] == ("suppressed", "channel disabled by user")
        assert sorted({d.channel for d in notification.deliveries.all()}) == ["email", "in_app", "push"]

    def test_a_type_override_beats_the_category_which_beats_the_channel(self, order_type, reachable_user):
        Recipient.objects.update(
            channel_preferences={"push": False, "email": False},
            type_preferences={"transactional": {"push": True, "sms": False}, "order_shipped": {"sms": True,
                                                                                               "in_app": False}},
        )
        notification = make_notification(order_type, reachable_user)

        route()

        decided = reasons(notification)
        assert decided["push"][0] == "queued"  # category re-enables what the channel switch turned off
        assert decided["email"] == ("suppressed", "channel disabled by user")
        assert decided["sms"][0] == "queued"  # the type re-enables what the category turned off
        assert decided["in_app"] == ("suppressed", "type opted out (order_shipped on in_app)")

    def test_a_critical_type_ignores_opt_outs_and_says_so(self, reachable_user):
        alert = make_order_type(key="security_alert", channels=("sms",), critical=True)
        Recipient.objects.update(channel_preferences={"sms": False})
        notification = make_notification(alert, reachable_user)

        route()

        notification.refresh_from_db()
        [decision] = notification.decisions
        assert decision["decision"] == "queued"
        assert decision["note"] == "critical type: sent despite 'channel disabled by user'"

    def test_marketing_needs_the_users_opt_in(self, reachable_user):
        promo = make_order_type(key="spring_sale", channels=("email",), category="marketing")
        first = make_notification(promo, reachable_user)
        route()
        Recipient.objects.update(marketing_opt_in=True)
        second = make_notification(promo, reachable_user)
        route()

        assert reasons(first)["email"] == ("suppressed", "marketing not opted in")
        first.refresh_from_db()
        assert first.status == NotificationStatus.SUPPRESSED
        assert reasons(second)["email"][0] == "queued"  # the change applies to the very next notification


class TestQuietHours:
    def in_quiet_hours_now(self, recipient, zone="Asia/Karachi"):
        """Quiet hours that started an hour ago and end in two hours, on the user's clock."""
        local = timezone.now().astimezone(__import__("zoneinfo").ZoneInfo(zone))
        start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
        end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
        Recipient.objects.filter(pk=recipient.pk).update(quiet_hours_start=start, quiet_hours_end=end, timezone=zone)
        return quiet_hours_release_at(timezone.now(), start, end, zone)

    def test_a_medium_priority_notification_in_quiet_hours_is_held_until_the_window_ends(self, order_type,
                                                                                          reachable_user):
        release_at = self.in_quiet_hours_now(reachable_user)
        notification = make_notification(order_type, reachable_user, priority="medium")

        route("medium")

        notification.refresh_from_db()
        assert notification.status == NotificationStatus.PROCESSING
        held = notification.deliveries.exclude(channel="in_app")
        assert {d.status for d in held} == {"held"}
        assert {d.next_attempt_at for d in held} == {release_at}
        expected = f"held for quiet hours until {release_at.astimezone(__import__('zoneinfo').ZoneInfo('Asia/Karachi')):%H:%M} Asia/Karachi"
        assert {d.status_reason for d in held} == {expected}
        assert reasons(notification)["push"] == ("held", expected)
        assert notification.deliveries.get(channel="in_app").status == "queued"  # the inbox is silent

    def test_high_priority_and_critical_types_pass_quiet_hours(self, order_type, reachable_user):
        self.in_quiet_hours_now(reachable_user)
        urgent = make_notification(order_type, reachable_user, priority="high")
        alert = make_order_type(key="security_alert", channels=("sms",), critical=True)
        critical = make_notification(alert, reachable_user, priority="low")

        route("high")
        route("low")

        assert set(urgent.deliveries.values_list("status", flat=True)) == {"queued"}
        assert set(critical.deliveries.values_list("status", flat=True)) == {"queued"}

    def test_a_held_delivery_is_not_sent_before_its_release_and_is_sent_after_a_beat_tick(self, order_type,
                                                                                            reachable_user):
        release_at = self.in_quiet_hours_now(reachable_user)
        notification = make_notification(order_type, reachable_user, priority="medium", channels=["email"])
        route("medium")

        assert release_due_holds(now=release_at - timedelta(seconds=1)) == 0
        assert deliver_due("email", "medium") == 0  # held rows are not claimable

        assert release_due_holds(now=release_at) == 1
        assert release_due_holds(now=release_at) == 0  # released once
        # the released row is due again; in real time the release moment has not come yet, so move it
        Delivery.objects.filter(notification=notification).update(next_attempt_at=timezone.now())
        assert deliver_due("email", "medium") == 1
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.DELIVERED

    @pytest.mark.django_db(transaction=True)
    def test_concurrent_beat_ticks_never_release_the_same_hold_twice(self, order_type):
        later = timezone.now() + timedelta(hours=1)
        for i in range(30):
            make_notification(order_type, make_reachable_user(f"u{i}", devices=[]), channels=["email", "sms"])
        route()
        Delivery.objects.update(status=DeliveryStatus.HELD, next_attempt_at=later)
        results = []

        def tick():
            results.append(release_due_holds(now=later, batch_size=7))
            connection.close()

        threads = [threading.Thread(target=tick) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sum(results) == 60
        assert Delivery.objects.filter(status="queued").count() == 60


    def test_beat_releases_holds_every_minute_by_default_and_the_interval_is_configurable(self, monkeypatch):
        import importlib

        import celeryconfig
        from notifier.tasks import release_holds
        from notifier_project.celery import app

        entry = celeryconfig.beat_schedule["release-holds"]
        assert (entry["task"], entry["schedule"]) == ("notifier.release_holds", 60.0)
        assert app.tasks[entry["task"]].name == release_holds.name  # a registered task, not a typo

        monkeypatch.setenv("NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS", "2")
        try:
            assert importlib.reload(celeryconfig).beat_schedule["release-holds"]["schedule"] == 2.0
        finally:
            monkeypatch.delenv("NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS")
            importlib.reload(celeryconfig)


class TestRateLimits:
    def test_the_31st_push_in_an_hour_is_suppressed_with_the_limit_in_its_reason(self, order_type,
                                                                                 reachable_user):
        notifications = [make_notification(order_type, reachable_user, channels=["push"]) for _ in range(31)]

        route()

        last = notifications[-1]
        assert reasons(last)["push"] == ("suppressed", "rate limited: 30/hour push")
        assert {d.status_reason for d in last.deliveries.all()} == {"rate limited: 30/hour push"}
        assert Delivery.objects.filter(status="queued").count() == 60  # two devices × 30 notifications
        last.refresh_from_db()
        assert last.status == NotificationStatus.SUPPRESSED

    def test_a_limit_on_one_channel_leaves_the_others_alone(self, order_type, reachable_user, settings):
        settings.NOTIFIER_RATE_LIMITS = {"channel": {"sms": (1, 3600)}, "type": {}}
        first = make_notification(order_type, reachable_user, channels=["sms", "email"])
        second = make_notification(order_type, reachable_user, channels=["sms", "email"])

        route()

        assert reasons(first)["sms"][0] == "queued"
        assert reasons(second) == {"sms": ("suppressed", "rate limited: 1/hour sms"), "email": ("queued", "")}
        for channel in ("sms", "email"):
            deliver_due(channel, "high")
        second.refresh_from_db()
        assert second.status == NotificationStatus.DELIVERED  # the suppressed SMS was never meant to go

    def test_one_marketing_notification_a_day_counts_once_across_its_channels(self, reachable_user):
        promo = make_order_type(key="spring_sale", channels=("email", "push"), category="marketing")
        Recipient.objects.update(marketing_opt_in=True)
        first = make_notification(promo, reachable_user)
        second = make_notification(promo, reachable_user)

        route()

        assert {d for d, _ in reasons(first).values()} == {"queued"}
        assert reasons(second) == {"email": ("suppressed", "rate limited: 1/day marketing"),
                                   "push": ("suppressed", "rate limited: 1/day marketing")}

    def test_critical_types_are_exempt(self, reachable_user, settings):
        settings.NOTIFIER_RATE_LIMITS = {"channel": {"sms": (1, 3600)}, "type": {}}
        alert = make_order_type(key="verification_code", channels=("sms",), critical=True)
        for _ in range(3):
            make_notification(alert, reachable_user)

        route()

        assert Delivery.objects.filter(status="queued").count() == 3

    def test_concurrent_checks_for_one_user_and_channel_admit_exactly_the_limit(self, clean_redis):
        # 90 routing workers at once (three times the limit), each with its own notification for the same
        # user on push; real threads on real Redis, each with its own connection from the client's pool
        # (redis-py caps a pool at 100 connections).
        limit = settings.NOTIFIER_RATE_LIMITS["channel"]["push"][0]
        start = threading.Barrier(90)
        verdicts = []

        def check(index):
            start.wait()
            verdicts.extend(rate_limits_check(
                [LimitCheck(user_id="u_7", channel="push", type_key="order_shipped", category="transactional",
                            member=f"notification-{index}", hold=False)], timezone.now()))

        threads = [threading.Thread(target=check, args=(i,)) for i in range(90)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(verdicts) == 90
        assert sum(not v.limited for v in verdicts) == limit == 30
        assert {v.reason for v in verdicts if v.limited} == {"rate limited: 30/hour push"}
        assert clean_redis.zcard(f"{KEY_PREFIX}channel:push:u_7") == limit

    def test_windows_belong_to_the_user_id_not_the_row_so_a_fresh_database_inherits_nothing(
        self, order_type, clean_redis
    ):
        # Redis outlived the database: the old database's recipient with this row id filled its push window.
        newcomer = make_reachable_user("u_new")
        now_ms = int(timezone.now().timestamp() * 1000)
        clean_redis.zadd(f"{KEY_PREFIX}{newcomer.id}:channel:push", {f"old-{i}": now_ms for i in range(30)})
        notification = make_notification(order_type, newcomer, channels=["push"])

        route()

        assert reasons(notification)["push"] == ("queued", "")
        assert clean_redis.zcard(f"{KEY_PREFIX}channel:push:u_new") == 1

    def test_routing_goes_on_when_redis_refuses_and_the_decision_says_limits_were_not_checked(
        self, order_type, reachable_user, settings, caplog
    ):
        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"  # every connect is refused
        notification = make_notification(order_type, reachable_user, channels=["push", "email"])

        route()

        decisions = {d["channel"]: d for d in Notification.objects.get(id=notification.id).decisions}
        assert {channel: d["decision"] for channel, d in decisions.items()} == {"push": "queued", "email": "queued"}
        for decision in decisions.values():
            assert decision["note"].startswith("rate limits not checked: Redis unreachable"), decision
        assert Delivery.objects.filter(notification=notification, status="queued").count() == 3
        assert "rate limits not checked" in caplog.text

    def test_a_type_set_to_hold_waits_until_the_window_has_room_and_is_released_then(self, reachable_user,
                                                                                    settings):
        settings.NOTIFIER_RATE_LIMITS = {"channel": {"sms": (1, 3600)}, "type": {}}
        digest = make_order_type(key="daily_summary", channels=("sms",), rate_limit_action="hold")
        first = make_notification(digest, reachable_user)
        second = make_notification(digest, reachable_user)
        third = make_notification(digest, reachable_user)

        route()

        sent_at = Delivery.objects.get(notification=first).next_attempt_at
        held = [Delivery.objects.get(notification=n) for n in (second, third)]
        assert [d.status for d in held] == ["held", "held"]
        # each waits for its own free slot: one an hour after the first, the next an hour later
        assert abs(held[0].next_attempt_at - (sent_at + timedelta(hours=1))) < timedelta(seconds=1)
        assert abs(held[1].next_attempt_at - (sent_at + timedelta(hours=2))) < timedelta(seconds=1)
        assert held[0].status_reason.startswith("rate limited: 1/hour sms; held until ")
        assert release_due_holds(now=held[0].next_attempt_at) == 1
