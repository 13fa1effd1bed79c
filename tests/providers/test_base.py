"""The adapter contract's batch sending: outcomes come back as sends complete, a bounded number at a time."""
import threading
import time

from notifier.providers.base import Message, Provider, SendResult


class CountingProvider(Provider):
    name = "counting"
    channel = "email"
    batch_concurrency = 4

    def __init__(self):
        self.started = 0
        self._lock = threading.Lock()

    def send(self, message):
        with self._lock:
            self.started += 1
        time.sleep(0.01)
        return SendResult(provider_message_id=f"m-{message.delivery_id}")


def email(delivery_id) -> Message:
    return Message(delivery_id=delivery_id, notification_id="n", channel="email", to=f"{delivery_id}@example.com")


def test_outcomes_come_as_sends_complete_and_none_starts_while_the_caller_holds_one():
    provider = CountingProvider()
    outcomes = provider.send_as_completed([email(i) for i in range(20)])

    index, first = next(outcomes)
    time.sleep(0.2)  # the caller records what it was given; the pool must not run ahead meanwhile

    assert provider.started == provider.batch_concurrency
    every = {index: first, **dict(outcomes)}
    assert sorted(every) == list(range(20)) and provider.started == 20
    assert all(outcome.provider_message_id == f"m-{i}" for i, outcome in every.items())


def test_send_batch_is_the_same_outcomes_in_order():
    outcomes = CountingProvider().send_batch([email(i) for i in range(10)])

    assert [o.provider_message_id for o in outcomes] == [f"m-{i}" for i in range(10)]
