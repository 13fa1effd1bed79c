"""The stream's rules that both servers share (notifier/api/inbox.py): when a heartbeat is due and when the
stream ends, and which Last-Event-ID is replayed from."""
import pytest

from notifier.api.inbox import StreamClock, stream_replay_after


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(settings):
    settings.NOTIFIER_INBOX_STREAM_SECONDS = 60
    settings.NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS = 15
    time = FakeTime()
    return StreamClock(now=time, phase=0), time


def test_a_quiet_stream_waits_until_its_heartbeat_is_due(clock):
    clock, time = clock

    assert clock.wait() == 15
    time.now += 10
    assert clock.wait() == 5 and not clock.heartbeat_due()
    time.now += 5
    assert clock.heartbeat_due()


def test_a_frame_sent_puts_the_next_heartbeat_off(clock):
    clock, time = clock
    time.now += 14

    clock.sent()

    assert clock.wait() == 15 and not clock.heartbeat_due()


def test_streams_opened_together_spread_their_first_heartbeats_over_the_interval(settings):
    settings.NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS = 15
    time = FakeTime()

    first_waits = [StreamClock(now=time).wait() for _ in range(200)]

    assert all(0 < wait <= 15 for wait in first_waits)
    assert min(first_waits) < 3 and max(first_waits) > 12


def test_the_stream_ends_at_its_lifetime_whatever_was_sent(clock):
    clock, time = clock
    time.now += 50
    clock.sent()

    assert clock.wait() == 10  # the end comes before the heartbeat
    time.now += 10
    assert clock.wait() == 0


@pytest.mark.parametrize("last_event_id, expected", [
    ("41", 41), ("", None), ("²", None), ("-1", None), ("abc", None), ("4 1", None),
    ("9223372036854775808", None), ("9223372036854775807", 9223372036854775807),
])
def test_only_an_id_the_stream_could_have_sent_is_replayed_from(last_event_id, expected):
    assert stream_replay_after(last_event_id) == expected
