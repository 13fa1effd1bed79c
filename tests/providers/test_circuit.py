"""The circuit breaker's transitions, against the real Redis: several workers share one state."""
import threading
import time

import pytest

from notifier.providers.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    circuit_admit,
    circuit_close,
    circuit_record,
    circuit_states,
)


@pytest.fixture(autouse=True)
def quick_circuit(settings):
    settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD = 3
    settings.NOTIFIER_CIRCUIT_COOLDOWN_SECONDS = 0.3
    settings.NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS = 1.0


def fail(provider, times=1):
    return circuit_record(provider, succeeded=False, trailing_failures=times)


def test_a_circuit_opens_after_the_threshold_of_consecutive_transient_failures():
    assert fail("sendgrid", 2) == CLOSED
    assert circuit_admit("sendgrid").verdict == "send"

    assert fail("sendgrid") == OPEN

    admission = circuit_admit("sendgrid")
    assert admission.verdict == "wait"
    assert 0 < admission.until - time.time() <= 0.3 + 0.05
    assert circuit_states(["sendgrid", "smtp"])["sendgrid"].startswith("open until ")
    assert circuit_states(["sendgrid", "smtp"])["smtp"] == CLOSED


def test_a_success_resets_the_count_of_consecutive_failures():
    fail("twilio", 2)
    circuit_record("twilio", succeeded=True, trailing_failures=0)
    fail("twilio", 2)

    assert circuit_admit("twilio").verdict == "send"
    # failures after the group's last success are what counts
    circuit_record("twilio", succeeded=True, trailing_failures=2)
    assert circuit_admit("twilio").failures == 2


def test_after_the_cooldown_exactly_one_worker_probes_at_once():
    fail("twilio", 3)
    time.sleep(0.35)
    verdicts = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        verdicts.append(circuit_admit("twilio").verdict)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(verdicts) == ["probe"] + ["wait"] * 7
    assert circuit_states(["twilio"])["twilio"] == HALF_OPEN


def test_a_successful_probe_closes_the_circuit():
    fail("apns", 3)
    time.sleep(0.35)
    assert circuit_admit("apns").verdict == "probe"

    assert circuit_record("apns", succeeded=True, trailing_failures=0, probe=True) == CLOSED

    assert circuit_admit("apns").verdict == "send"
    assert circuit_admit("apns").failures == 0


def test_a_failed_probe_opens_it_again_for_twice_the_cooldown_up_to_the_maximum():
    fail("fcm", 3)
    time.sleep(0.35)
    circuit_admit("fcm")

    assert circuit_record("fcm", succeeded=False, trailing_failures=1, probe=True) == OPEN

    admission = circuit_admit("fcm")
    assert admission.verdict == "wait"
    assert 0.5 < admission.until - time.time() <= 0.6 + 0.05  # 0.3 s doubled
    time.sleep(0.65)
    assert circuit_admit("fcm").verdict == "probe"
    circuit_record("fcm", succeeded=False, trailing_failures=1, probe=True)  # 1.2 s, capped at 1.0
    assert 0.9 < circuit_admit("fcm").until - time.time() <= 1.05


def test_closing_by_hand_closes_at_once():
    fail("sendgrid", 3)

    circuit_close("sendgrid")

    assert circuit_admit("sendgrid").verdict == "send"


def test_with_redis_unreachable_the_circuit_lets_everything_through(settings, own_redis):
    settings.REDIS_URL = own_redis.url
    fail("sendgrid", 3)
    own_redis.stop()

    assert circuit_admit("sendgrid").verdict == "send"
    assert fail("sendgrid") == CLOSED
    assert circuit_states(["sendgrid"])["sendgrid"].startswith("unknown")
