"""A poison delivery: the provider answers 500 to every attempt. It is tried exactly max_attempts times,
with waits that grow (exponential backoff, full jitter, under a ceiling that doubles), becomes one dead
letter with every attempt's error, and a replay of it to another channel reaches the user once."""
import json

import pytest

from notifier.models import Delivery, DeliveryStatus
from tests.chaos.conftest import REPORTS, accepted_ids, all_terminal, seed_email_notifications, terminal_ids
from tests.e2e.conftest import wait_until
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

POLICY = {"max_attempts": 4, "base_delay": 1, "max_delay": 8}


def test_a_poison_delivery_is_tried_max_attempts_times_then_dead_and_its_replay_to_sms_goes_once(
    api, producer, order_type, sendgrid, chaos_env, chaos_report, start_worker, start_beat
):
    with FakeTwilio() as twilio:
        env = {
            **chaos_env, "NOTIFIER_RETRY_POLICY": json.dumps({"high": POLICY}),
            # One poison delivery in a row of failures must use up its attempts: the circuit is not under test.
            "NOTIFIER_CIRCUIT_FAILURE_THRESHOLD": 1000,
            "NOTIFIER_SMS_PROVIDERS": "twilio", "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token, "TWILIO_FROM_NUMBER": "+15005550006",
            "TWILIO_BASE_URL": twilio.url,
        }
        [notification] = seed_email_notifications(order_type, 1, recipient_fields={"phone": "+14155550123"})
        notification.producer = producer
        notification.save(update_fields=["producer"])
        poison = notification.recipient.email
        sendgrid.set_outcome(poison, status=500)
        start_beat(**env)  # the sweeper wakes the queue when each backoff ends
        start_worker(**env)

        wait_until(all_terminal, timeout=90, interval=0.5)
        dead = Delivery.objects.get(notification=notification, channel="email")
        calls = [r for r in sendgrid.requests if poison in json.dumps(r.body)]

        assert dead.status == DeliveryStatus.DEAD
        assert dead.attempts == len(calls) == POLICY["max_attempts"]  # exactly max_attempts, never one more
        history = list(dead.attempt_history.order_by("number"))
        assert [(a.number, a.outcome, a.provider_code) for a in history] == [
            (n, "transient", "500") for n in range(1, POLICY["max_attempts"] + 1)]
        # Each wait is drawn under a ceiling that doubles: attempt n waited at most base * 2^(n-1) (plus a
        # sweep interval and a task to wake it), and the last wait's ceiling is the largest.
        gaps = [(later.at - earlier.at).total_seconds() for earlier, later in zip(history, history[1:])]
        ceilings = [min(POLICY["max_delay"], POLICY["base_delay"] * 2 ** n) for n in range(len(gaps))]
        assert ceilings == sorted(ceilings) and ceilings[-1] > ceilings[0]
        assert all(gap <= ceiling + 3 for gap, ceiling in zip(gaps, ceilings)), (gaps, ceilings)

        replay = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {"channel": "sms"}, format="json")
        again = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {"channel": "sms"}, format="json")
        assert replay.status_code == again.status_code == 202
        assert again.json()["delivery_id"] == replay.json()["delivery_id"]  # one replay, however often asked

        wait_until(lambda: Delivery.objects.get(id=replay.json()["delivery_id"]).status == DeliveryStatus.SENT,
                   timeout=60, interval=0.5)
        wait_until(all_terminal, timeout=30, interval=0.5)
        texts = [r for r in twilio.requests if r.body.get("To") == "+14155550123"]
        assert len(texts) == 1  # the replay reached the user once, on SMS
        assert accepted_ids() == terminal_ids()

        # settle() would count the retries at SendGrid as duplicates: here they are the point.
        chaos_report.accepted = chaos_report.terminal = len(accepted_ids())
        chaos_report.sent_at_fake = len(texts)
        REPORTS.append(chaos_report)
        chaos_report.notes.append(f"{len(calls)} attempts at SendGrid, waits {[round(g, 1) for g in gaps]} s, "
                                  f"1 dead letter, {len(texts)} SMS from its replay")
