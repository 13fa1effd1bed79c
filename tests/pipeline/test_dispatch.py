import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifier.models import Delivery, DeliveryStatus, Device, InboxItem, NotificationStatus, Recipient, SandboxMessage
from notifier.pipeline.dispatch import deliver_due, deliveries_claim, deliveries_send, retry_delay
from notifier.pipeline.route import route_due
from notifier.pipeline.sweep import release_expired_claims, wake_due_queues
from notifier.producer_webhooks import producers_with_webhook
from tests.pipeline.test_route import make_notification
from tests.support import scripted_provider
from tests.support.concurrency import record_at_once
from tests.support.scripted_provider import script

pytestmark = pytest.mark.django_db

SCRIPTED = "tests.support.scripted_provider"


@pytest.fixture
def scripted(settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": [SCRIPTED], "email": [SCRIPTED], "sms": [SCRIPTED]}


@pytest.fixture
def routed(order_type, reachable_user):
    notification = make_notification(order_type, reachable_user)
    route_due("high")
    return notification


def test_a_delivery_is_sent_once_even_when_its_task_runs_twice(routed):
    assert deliver_due("push", "high") == 2
    assert deliver_due("push", "high") == 0

    assert SandboxMessage.objects.filter(channel="push").count() == 2
    assert set(Delivery.objects.filter(channel="push").values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_claim_disjoint_deliveries(order_type):
    from tests.conftest import make_reachable_user

    for i in range(40):
        make_notification(order_type, make_reachable_user(f"u{i}", devices=[("ios", f"t{i}")]), channels=["push"])
    route_due("high")
    claimed = []

    def worker():
        claimed.append([d.id for d in deliveries_claim("push", "high", 15)])
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [i for batch in claimed for i in batch]
    assert len(ids) == len(set(ids)) == 40


def test_in_app_writes_one_inbox_item(routed):
    deliver_due("in_app", "high")
    Delivery.objects.filter(channel="in_app").update(status="queued")  # as if the task ran again
    deliver_due("in_app", "high")

    item = InboxItem.objects.get()
    assert (item.title, item.body, item.action_url) == ("Order shipped", "Order 42 ships.", "/o/42")


def test_the_notification_is_delivered_when_every_delivery_is(routed):
    for channel in ("push", "email", "sms", "in_app"):
        deliver_due(channel, "high")

    routed.refresh_from_db()
    assert routed.status == NotificationStatus.DELIVERED
    assert routed.completed_at is not None


def test_a_transient_error_is_retried_later_with_backoff(scripted, routed):
    script("+14155550100", {"kind": "transient", "code": "503"})
    before = timezone.now()

    deliver_due("sms", "high")

    sms = Delivery.objects.get(channel="sms")
    assert sms.status == DeliveryStatus.QUEUED
    assert sms.attempts == 1
    assert "503" in sms.last_error
    assert before <= sms.next_attempt_at <= timezone.now() + timedelta(seconds=2)  # high: base 2 s
    Delivery.objects.filter(id=sms.id).update(next_attempt_at=timezone.now())

    deliver_due("sms", "high")

    sms.refresh_from_db()
    assert (sms.status, sms.attempts, sms.last_error) == ("sent", 2, "")
    assert scripted_provider.sent()[0]["to"] == "+14155550100"


def test_a_delivery_that_keeps_failing_goes_to_the_dead_letter(scripted, routed, settings):
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    script("u_42@example.com", *[{"kind": "transient"}] * max_attempts)

    for _ in range(max_attempts):
        Delivery.objects.filter(channel="email").update(next_attempt_at=timezone.now())
        deliver_due("email", "high")

    email = Delivery.objects.get(channel="email")
    assert email.status == DeliveryStatus.DEAD
    assert email.attempts == max_attempts
    assert f"gave up after {max_attempts} attempts" in email.last_error


def test_a_rate_limited_delivery_waits_for_retry_after(scripted, routed):
    script("+14155550100", {"kind": "rate_limited", "retry_after": 30})

    deliver_due("sms", "high")

    sms = Delivery.objects.get(channel="sms")
    assert sms.status == DeliveryStatus.QUEUED
    assert timedelta(seconds=29) < sms.next_attempt_at - timezone.now() <= timedelta(seconds=30)


def test_a_permanent_error_is_never_retried_and_a_gone_token_is_deactivated(scripted, order_type, routed):
    script("ios-token-1", {"kind": "permanent", "code": "Unregistered", "target_gone": True})

    deliver_due("push", "high")

    failed = Delivery.objects.get(target="ios-token-1")
    assert (failed.status, failed.attempts) == ("failed", 1)
    device = Device.objects.get(token="ios-token-1")
    assert not device.active and "Unregistered" in device.deactivated_reason
    # the next notification to this user never goes to that token
    make_notification(order_type, Recipient.objects.get(user_id="u_42"), channels=["push"])
    route_due("high")
    assert Delivery.objects.filter(target="ios-token-1").count() == 1


def test_an_unsubscribed_phone_is_recorded_as_opted_out(scripted, routed):
    script("+14155550100", {"kind": "permanent", "code": "21610", "target_gone": True})

    deliver_due("sms", "high")

    assert Recipient.objects.get(user_id="u_42").sms_opted_out_at is not None


def test_partial_failure_marks_the_notification_partially_delivered(scripted, routed):
    script("ios-token-1", {"kind": "permanent", "code": "BadDeviceToken", "target_gone": True})

    for channel in ("push", "email", "sms", "in_app"):
        deliver_due(channel, "high")

    routed.refresh_from_db()
    assert routed.status == NotificationStatus.PARTIALLY_DELIVERED


def test_an_expired_delivery_is_not_sent(routed):
    routed.expires_at = timezone.now() - timedelta(seconds=1)
    routed.save()

    deliver_due("email", "high")

    assert Delivery.objects.get(channel="email").status == DeliveryStatus.EXPIRED
    assert not SandboxMessage.objects.exists()


def test_a_claim_whose_worker_died_returns_to_the_queue_after_the_lease(routed, settings):
    deliveries_claim("email", "high", 10)  # claimed, then the worker "dies"
    lease = timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS)

    assert release_expired_claims(now=timezone.now()) == 0  # still within the lease
    assert release_expired_claims(now=timezone.now() + lease + timedelta(seconds=1)) == 1

    email = Delivery.objects.get(channel="email")
    assert (email.status, email.attempts) == ("queued", 1)
    assert deliver_due("email", "high") == 1
    assert Delivery.objects.get(channel="email").attempts == 2


def test_a_lost_claim_on_the_last_attempt_goes_to_the_dead_letter(routed, settings):
    Delivery.objects.filter(channel="email").update(attempts=settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"] - 1)
    deliveries_claim("email", "high", 10)

    release_expired_claims(now=timezone.now() + timedelta(days=1))

    assert Delivery.objects.get(channel="email").status == DeliveryStatus.DEAD


def test_the_sweeper_wakes_every_queue_with_due_rows_once(routed, clean_redis):
    clean_redis.flushdb()  # forget the wake-ups routing published

    woken = wake_due_queues()
    again = wake_due_queues()

    assert sorted(woken) == ["email.high", "in_app.high", "push.high", "sms.high"]
    assert again == woken  # the flag holds: no second message while one is pending
    assert [clean_redis.llen(q) for q in woken] == [1, 1, 1, 1]


def test_retry_delay_is_full_jitter_below_the_exponential_ceiling(settings):
    delays = [retry_delay("medium", 3) for _ in range(200)]
    assert all(0 <= d <= 20 for d in delays)  # base 5 s * 2^(3-1)
    assert max(delays) > 10 and min(delays) < 10
    assert all(retry_delay("medium", 30) <= 600 for _ in range(50))


def test_check_warns_when_the_claim_lease_does_not_outlast_a_task(settings):
    from notifier.checks import claim_lease_outlasts_tasks

    assert claim_lease_outlasts_tasks(None) == []  # the defaults are consistent

    settings.NOTIFIER_CLAIM_LEASE_SECONDS = 100
    (warning,) = claim_lease_outlasts_tasks(None)

    assert warning.id == "notifier.W002" and "twice" in warning.msg


@pytest.mark.django_db(transaction=True)
def test_the_last_two_deliveries_recorded_at_once_by_two_workers_close_the_notification(order_type):
    recipient = Recipient.objects.create(user_id="u_race", email="r@example.com", phone="+14155550100")
    notification = make_notification(order_type, recipient, channels=["email", "sms"])
    route_due("high")
    deliveries = list(Delivery.objects.filter(notification=notification).order_by("channel"))
    assert len(deliveries) == 2
    Delivery.objects.filter(notification=notification).update(status=DeliveryStatus.SENDING)
    record_at_once(notification, deliveries, status=DeliveryStatus.DELIVERED)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DELIVERED


def test_a_worker_that_outlived_its_lease_cannot_overwrite_the_next_claims_outcome(scripted, routed, caplog):
    stale = deliveries_claim("sms", "high", 10)  # worker A claims, then stalls past its lease
    release_expired_claims(now=timezone.now() + timedelta(days=1))
    script("+14155550100", {"kind": "permanent", "code": "21211"})
    deliver_due("sms", "high")  # worker B takes it again: the provider refuses the number for good

    deliveries_send(stale)  # worker A wakes up, and its send succeeds

    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.attempts) == (DeliveryStatus.FAILED, 2)
    assert "21211" in sms.last_error
    assert f"lost the claim on delivery {sms.id}" in caplog.text


def test_a_stale_workers_outcome_has_no_side_effects(scripted, routed):
    stale = deliveries_claim("push", "high", 10)
    release_expired_claims(now=timezone.now() + timedelta(days=1))  # back in the queue
    script("ios-token-1", {"kind": "permanent", "code": "Unregistered", "target_gone": True})
    script("android-token-1", {"kind": "permanent", "code": "UNREGISTERED", "target_gone": True})

    deliveries_send(stale)

    assert set(Delivery.objects.filter(channel="push").values_list("status", flat=True)) == {"queued"}
    assert Device.objects.filter(active=True).count() == 2  # the next claim decides, not the stale one


def notifications_for_many_users(order_type, count, channels):
    from tests.conftest import make_reachable_user

    for i in range(count):
        make_notification(order_type, make_reachable_user(f"user-{i}", devices=[("ios", f"token-{i}")]),
                          channels=channels)
    route_due("high", batch_size=count)


def test_gone_tokens_are_deactivated_in_a_fixed_number_of_queries(scripted, order_type, django_assert_max_num_queries):
    from notifier.pipeline.dispatch import targets_gone

    notifications_for_many_users(order_type, 30, ["push"])
    deliveries = list(Delivery.objects.filter(channel="push"))
    for delivery in deliveries:
        delivery.last_error = "apns permanent: Unregistered"

    with django_assert_max_num_queries(2):
        targets_gone(deliveries)

    assert not Device.objects.filter(active=True).exists()
    assert set(Device.objects.values_list("deactivated_reason", flat=True)) == {"apns permanent: Unregistered"}


def test_outcomes_are_recorded_as_sends_complete_so_a_worker_dying_mid_batch_loses_few(scripted, order_type):
    from notifier.pipeline.dispatch import RECORD_GROUP_SIZE
    from notifier.providers.registry import provider_get

    notifications_for_many_users(order_type, 150, ["email"])
    script("user-120@example.com", {"kind": "die"})

    with pytest.raises(scripted_provider.WorkerDied):
        deliver_due("email", "high")

    sent = {s["delivery_id"] for s in scripted_provider.sent()}
    recorded = set(Delivery.objects.filter(channel="email", status="sent").values_list("id", flat=True))
    assert recorded <= sent and len(sent) >= 100
    # What a crash costs: the sends in flight and the outcomes not yet recorded, never the whole batch.
    in_flight = provider_get(SCRIPTED, "email").batch_concurrency
    assert len(sent - recorded) <= in_flight + RECORD_GROUP_SIZE


def test_a_batch_costs_a_few_queries_per_group_of_outcomes_whatever_its_size(
    scripted, order_type, django_assert_max_num_queries, monkeypatch
):
    from notifier.pipeline import dispatch
    from notifier.pipeline.dispatch import RECORD_GROUP_SIZE

    monkeypatch.setattr(dispatch, "RECORD_INTERVAL_SECONDS", 60)  # groups by size only, however slow the machine
    notifications_for_many_users(order_type, 200, ["push"])
    for i in range(0, 200, 2):  # half the tokens are gone: deactivating them is set-based too
        script(f"token-{i}", {"kind": "permanent", "code": "Unregistered", "target_gone": True})
    groups = -(-200 // RECORD_GROUP_SIZE)

    # The claim: 3 and its events 1, and its savepoint 2. Per group: its transaction's and the outcomes'
    # savepoints 4, the outcomes 1 and their events 1, the attempts' history 1, the reports kept for the
    # sent ones 1, the devices 2, the notifications up to 5.
    producers_with_webhook()  # loaded once per process and NOTIFIER_PROCESS_CACHE_SECONDS, not per batch
    with django_assert_max_num_queries(6 + groups * 15):
        assert deliver_due("push", "high") == 200

    assert Device.objects.filter(active=False).count() == 100
    assert Delivery.objects.filter(status="sent").count() == 100


def test_an_inbox_item_that_cannot_be_stored_fails_alone_and_the_rest_of_its_batch_is_delivered(order_type):
    notifications_for_many_users(order_type, 100, ["in_app"])
    # Rendered before its title was checked against the inbox's column (255 characters).
    bad = Delivery.objects.filter(channel="in_app").order_by("id")[50]
    Delivery.objects.filter(id=bad.id).update(content={**bad.content, "title": "t" * 300})

    assert deliver_due("in_app", "high") == 100

    bad.refresh_from_db()
    assert (bad.status, bad.attempts) == (DeliveryStatus.FAILED, 1)
    assert "value too long" in bad.last_error
    others = Delivery.objects.filter(channel="in_app").exclude(id=bad.id)
    assert set(others.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert InboxItem.objects.count() == 99
    assert bad.notification.status == NotificationStatus.FAILED


def test_an_outcome_that_cannot_be_recorded_fails_alone_and_the_rest_are_recorded(scripted, order_type):
    notifications_for_many_users(order_type, 20, ["email"])
    script("user-7@example.com", {"kind": "ok", "provider_message_id": "m" * 300})  # over the 255 column

    assert deliver_due("email", "high") == 20

    bad = Delivery.objects.get(target="user-7@example.com")
    assert bad.status == DeliveryStatus.FAILED
    assert "could not be recorded" in bad.last_error and "value too long" in bad.last_error
    assert Delivery.objects.filter(channel="email", status="sent").count() == 19


def test_a_delivery_that_dies_through_the_lease_closes_its_notification_and_keeps_its_last_error(
    scripted, order_type, reachable_user, settings
):
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    script("u_42@example.com", {"kind": "transient", "code": "503"})
    deliver_due("email", "high")  # a real error, then retries until the last allowed attempt
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    Delivery.objects.filter(channel="email").update(attempts=max_attempts - 1, next_attempt_at=timezone.now())
    deliveries_claim("email", "high", 10)  # the last attempt; its worker dies

    release_expired_claims(now=timezone.now() + timedelta(days=1))

    email = Delivery.objects.get(channel="email")
    assert email.status == DeliveryStatus.DEAD
    assert "scripted outage" in email.last_error and "503" in email.last_error
    assert "worker lost during the last allowed attempt" in email.last_error
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.completed_at is not None


@pytest.mark.django_db(transaction=True)
def test_outcomes_whose_connection_the_database_ended_are_recorded_on_a_new_one(scripted, routed, monkeypatch):
    import psycopg

    from notifier.pipeline import dispatch

    rows_update = dispatch.rows_update
    calls = []

    def terminated_first(*args, **kwargs):
        # As pg_terminate_backend from an operator or a failover: this session ends before its first write.
        if not calls:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            database = connection.settings_dict
            with psycopg.connect(host=database["HOST"], port=database["PORT"], user=database["USER"],
                                 dbname=database["NAME"], autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
        calls.append(args)
        return rows_update(*args, **kwargs)

    monkeypatch.setattr(dispatch, "rows_update", terminated_first)

    assert deliver_due("push", "high") == 2

    assert set(Delivery.objects.filter(channel="push").values_list("status", flat=True)) == {"sent"}
    assert [s["to"] for s in scripted_provider.sent()].count("ios-token-1") == 1


class TestEmailCheckedAgainAtSendTime:
    """An email routed before the user unsubscribed, or before its address bounced, is not sent when its
    turn comes (a hold, a retry or a long queue can be hours after routing)."""

    @pytest.fixture
    def marketing(self, db):
        from tests.conftest import make_order_type

        return make_order_type("spring_sale", channels=("email",), category="marketing")

    @pytest.fixture
    def subscriber(self, reachable_user):
        reachable_user.marketing_opt_in = True
        reachable_user.save()
        return reachable_user

    def test_an_unsubscribe_after_routing_stops_the_queued_email(self, scripted, marketing, subscriber):
        from notifier.services import recipient_unsubscribe
        from tests.support.scripted_provider import sent as sent_messages

        notification = make_notification(marketing, subscriber)
        route_due("high")
        recipient_unsubscribe(subscriber.id, "marketing", source="link")

        deliver_due("email", "high")

        delivery = Delivery.objects.get(notification=notification)
        assert delivery.status == "suppressed" and delivery.attempts == 0
        assert delivery.status_reason == "category opted out (marketing on email) (at send time)"
        assert not delivery.attempt_history.exists() and sent_messages() == []
        notification.refresh_from_db()
        assert notification.status == "suppressed"

    def test_a_bounce_after_routing_stops_the_queued_email_to_that_address(self, scripted, order_type, reachable_user):
        from notifier.models import EmailSuppression
        from tests.support.scripted_provider import sent as sent_messages

        notification = make_notification(order_type, reachable_user, channels=["email", "in_app"])
        route_due("high")
        EmailSuppression.objects.create(address=reachable_user.email.lower(), reason="hard_bounce",
                                        source="sendgrid")

        deliver_due("email", "high")
        deliver_due("in_app", "high")

        delivery = Delivery.objects.get(notification=notification, channel="email")
        assert delivery.status == "suppressed" and "email address suppressed" in delivery.status_reason
        assert sent_messages() == []
        notification.refresh_from_db()
        assert notification.status == "delivered"  # the inbox item reached the user; the email never counted
