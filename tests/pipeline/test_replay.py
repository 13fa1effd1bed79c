"""Dead letters: every attempt of a delivery that needed more than one is recorded, and a dead letter is replayed once, on its channel or another."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifier.models import Delivery, DeliveryAttempt, Device, NotificationStatus, Producer, Template
from notifier.pipeline.dispatch import deliver_due, deliveries_claim
from notifier.pipeline.replay import NotReplayable, dead_letter_replay, dead_letters_replay
from notifier.pipeline.sweep import release_expired_claims
from notifier.selectors import dead_letters
from tests.support.dead_letters import make_dead_letters, use_scripted_providers
from tests.support.scripted_provider import script

pytestmark = pytest.mark.django_db


@pytest.fixture
def scripted(settings):
    use_scripted_providers(settings)


@pytest.fixture
def dead_email(scripted, order_type):
    return make_dead_letters(order_type, 1, "email")[0]


def test_every_attempt_of_a_dead_letter_is_in_its_history_with_its_error(scripted, order_type, settings):
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    started = timezone.now()

    [dead] = make_dead_letters(order_type, 1, "email", code="421")

    history = list(dead.attempt_history.order_by("number"))
    assert [a.number for a in history] == list(range(1, max_attempts + 1))
    assert {(a.outcome, a.provider, a.provider_code) for a in history} == {("transient", "scripted", "421")}
    assert all("scripted outage" in a.message for a in history)
    times = [a.at for a in history]
    assert started <= times[0] and times == sorted(times)


def test_a_failed_attempt_is_recorded_with_the_providers_answer_and_a_first_try_success_by_its_row_alone(
        scripted, order_type, reachable_user):
    from tests.pipeline.test_route import make_notification
    from notifier.pipeline.route import route_due

    make_notification(order_type, reachable_user, channels=["sms", "email"])
    route_due("high")
    script("+14155550100", {"kind": "permanent", "code": "21610"})

    deliver_due("sms", "high")
    deliver_due("email", "high")

    [attempt] = DeliveryAttempt.objects.select_related("delivery")
    assert (attempt.delivery.channel, attempt.outcome, attempt.provider_code) == ("sms", "permanent", "21610")
    email = Delivery.objects.get(channel="email")
    assert (email.status, email.provider, email.attempts, email.sent_at is not None) == ("sent", "scripted", 1, True)


def test_a_success_after_a_retry_is_recorded_with_the_attempts_before_it(scripted, order_type, reachable_user):
    from tests.pipeline.test_route import make_notification
    from notifier.pipeline.route import route_due

    make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    script(reachable_user.email, {"kind": "transient", "code": "421"})
    deliver_due("email", "high")
    Delivery.objects.update(next_attempt_at=timezone.now())  # its backoff passed

    deliver_due("email", "high")

    history = [(a.number, a.outcome, a.provider_code) for a in DeliveryAttempt.objects.order_by("number")]
    assert history == [(1, "transient", "421"), (2, "sent", "")]
    assert Delivery.objects.get().status == "sent"


def test_a_worker_lost_on_an_attempt_is_in_the_history(scripted, order_type, reachable_user, settings):
    from tests.pipeline.test_route import make_notification
    from notifier.pipeline.route import route_due

    make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")
    deliveries_claim("email", "high", 10)  # its worker dies

    release_expired_claims(now=timezone.now() + timedelta(days=1))

    [attempt] = DeliveryAttempt.objects.all()
    assert (attempt.number, attempt.outcome, attempt.provider) == (1, "worker_lost", "")
    assert "worker lost" in attempt.message


def test_a_replay_on_the_same_channel_is_a_new_delivery_linked_to_the_dead_one(dead_email):
    notification = dead_email.notification
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED

    replay = dead_letter_replay(notification.producer, dead_email.id)

    assert replay.created
    new = replay.delivery
    assert (new.channel, new.target, new.status, new.priority) == ("email", dead_email.target, "queued", "high")
    assert new.replayed_from_id == dead_email.id and new.attempts == 0
    assert new.content["subject"] == dead_email.content["subject"]
    dead_email.refresh_from_db()
    assert dead_email.status == "dead" and dead_email.replayed_as == new  # the dead row stays as history
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PROCESSING and notification.completed_at is None


def test_a_delivered_replay_closes_the_notification_as_delivered(dead_email):
    replay = dead_letter_replay(None, dead_email.id)

    deliver_due("email", "high")

    replay.delivery.refresh_from_db()
    assert replay.delivery.status == "sent"
    notification = dead_email.notification
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DELIVERED  # the replayed dead letter no longer counts


def test_a_replay_is_rendered_with_the_current_template(dead_email):
    # The operator fixed the template after the failures: the replay uses the fix.
    Template.objects.filter(channel="email").update(subject="Fixed: order {{ order_id }}")

    replay = dead_letter_replay(None, dead_email.id)

    assert replay.delivery.content["subject"] == "Fixed: order 42"


def test_a_replay_to_another_channel_uses_that_channels_template_and_target(dead_email):
    replay = dead_letter_replay(None, dead_email.id, channel="sms")

    new = replay.delivery
    assert (new.channel, new.target) == ("sms", "+14155550100")
    assert new.content["body"] == "Order 42 ships with UPS."
    assert new.template.channel == "sms"


def test_a_replay_to_push_goes_to_the_newest_active_device(dead_email):
    recipient = dead_email.notification.recipient
    Device.objects.create(recipient=recipient, platform="android", token="newer-token")

    replay = dead_letter_replay(None, dead_email.id, channel="push")

    assert (replay.delivery.target, replay.delivery.device.token) == ("newer-token", "newer-token")


def test_replaying_twice_makes_one_delivery_and_answers_with_the_same_id(dead_email):
    first = dead_letter_replay(None, dead_email.id)
    second = dead_letter_replay(None, dead_email.id, channel="sms")

    assert second.delivery.id == first.delivery.id and not second.created
    assert Delivery.objects.filter(replayed_from=dead_email).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_replays_of_one_dead_letter_make_one_delivery(scripted, order_type):
    [dead] = make_dead_letters(order_type, 1, "email")
    answers, errors = [], []
    barrier = threading.Barrier(2)

    def replay():
        try:
            barrier.wait()
            answers.append(dead_letter_replay(None, dead.id).delivery.id)
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(answers) == 2 and answers[0] == answers[1]
    assert Delivery.objects.filter(replayed_from=dead).count() == 1


def test_a_replay_to_a_channel_the_user_cannot_be_reached_on_is_refused_with_the_reason(dead_email):
    recipient = dead_email.notification.recipient
    recipient.phone = ""
    recipient.save()

    with pytest.raises(NotReplayable) as refused:
        dead_letter_replay(None, dead_email.id, channel="sms")

    assert refused.value.field == "channel"
    assert "recipient has no phone number" in refused.value.reason
    assert not Delivery.objects.filter(replayed_from=dead_email).exists()


def test_a_replay_on_the_same_channel_whose_target_is_gone_is_refused(scripted, order_type):
    [dead] = make_dead_letters(order_type, 1, "push")
    Device.objects.filter(token=dead.target).update(active=False)

    with pytest.raises(NotReplayable) as refused:
        dead_letter_replay(None, dead.id)

    assert "no active device" in refused.value.reason


def test_another_producers_dead_letter_is_not_found(dead_email):
    other, _ = Producer.create_with_key("other", ["send"])

    assert dead_letter_replay(other, dead_email.id) is None


def test_a_bulk_replay_replays_the_filtered_dead_letters_once(scripted, order_type):
    make_dead_letters(order_type, 3, "email", code="503", user_prefix="a")
    make_dead_letters(order_type, 2, "email", code="554", user_prefix="b")

    result = dead_letters_replay(None, {"error_code": "554"})

    assert (result.replayed, result.refused, result.remaining) == (2, {}, 0)
    replayed = Delivery.objects.filter(replayed_from__isnull=False)
    assert {d.notification.recipient.user_id for d in replayed} == {"b-0", "b-1"}
    assert dead_letters_replay(None, {"error_code": "554"}).replayed == 0  # already replayed


def test_a_bulk_replay_is_bounded_and_says_how_many_remain(scripted, order_type, monkeypatch):
    from notifier.pipeline import replay

    monkeypatch.setattr(replay, "BULK_REPLAY_MAX", 2)
    dead = make_dead_letters(order_type, 3, "email")

    result = dead_letters_replay(None, {})

    assert (result.replayed, result.remaining) == (2, 1)
    # Newest first: the oldest is left for the next call.
    assert not Delivery.objects.filter(replayed_from=dead[0]).exists()
    assert dead_letters_replay(None, {}).replayed == 1


@pytest.mark.parametrize("count", [10, 200])
def test_a_bulk_replay_costs_the_same_queries_for_10_or_200_dead_letters(
    scripted, order_type, count, django_assert_num_queries
):
    make_dead_letters(order_type, count, "email")

    # The transaction 2, the count 1, the rows 1, devices and templates 2, the insert 1, the notifications 1.
    with django_assert_num_queries(8):
        result = dead_letters_replay(None, {}, channel="sms")

    assert result.replayed == count
    assert Delivery.objects.filter(channel="sms", replayed_from__isnull=False).count() == count


@pytest.mark.parametrize("filters, expected", [
    ({}, {"a-0", "b-0", "c-0"}),
    ({"channel": "sms"}, {"c-0"}),
    ({"provider": "scripted"}, {"a-0", "b-0", "c-0"}),
    ({"provider": "sendgrid"}, set()),
    ({"type_key": "order_shipped"}, {"a-0", "b-0", "c-0"}),
    ({"type_key": "other"}, set()),
    ({"error_code": "554"}, {"b-0"}),
])
def test_the_dead_letter_listing_filters(scripted, order_type, filters, expected):
    make_dead_letters(order_type, 1, "email", code="503", user_prefix="a")
    make_dead_letters(order_type, 1, "email", code="554", user_prefix="b")
    make_dead_letters(order_type, 1, "sms", code="30003", user_prefix="c")
    producer = Producer.objects.get()

    listed = {d.notification.recipient.user_id for d in dead_letters(producer, **filters)}

    assert listed == expected


def test_the_dead_letter_listing_filters_by_time(scripted, order_type):
    [old] = make_dead_letters(order_type, 1, "email", user_prefix="a")
    [new] = make_dead_letters(order_type, 1, "email", user_prefix="b")
    Delivery.objects.filter(id=old.id).update(failed_at=timezone.now() - timedelta(days=2))
    day_ago = timezone.now() - timedelta(days=1)

    assert [d.id for d in dead_letters(None, since=day_ago)] == [new.id]
    assert [d.id for d in dead_letters(None, until=day_ago)] == [old.id]
