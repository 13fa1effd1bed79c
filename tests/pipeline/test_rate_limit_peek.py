"""rate_limits_peek: the rate-limit decision a campaign's dry run needs, read-only. For every state of a
user's windows it answers what rate_limits_check would, and leaves Redis exactly as it was."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.pipeline.rate_limits import KEY_PREFIX, LimitCheck, rate_limits_check, rate_limits_peek

PUSH_KEY = f"{KEY_PREFIX}channel:push:u_7"


def push_check(member: str, hold: bool = False) -> LimitCheck:
    return LimitCheck(user_id="u_7", channel="push", type_key="order_shipped", category="transactional",
                      member=member, hold=hold)


def redis_state(client) -> dict:
    return {key: (client.zrange(key, 0, -1, withscores=True), client.pttl(key) > 0)
            for key in sorted(client.keys(f"{KEY_PREFIX}*"))}


@pytest.fixture
def window_of(clean_redis, settings):
    """The user's push window (3 an hour), filled with entries of these ages in seconds."""
    settings.NOTIFIER_RATE_LIMITS = {"channel": {"push": (3, 3600)}, "type": {}}

    def fill(now, *ages):
        now_ms = int(now.timestamp() * 1000)  # the route step scores in whole milliseconds
        if ages:
            clean_redis.zadd(PUSH_KEY, {f"old-{i}": now_ms - age * 1000 for i, age in enumerate(ages)})
            clean_redis.pexpire(PUSH_KEY, 3_600_000)
    return fill


@pytest.mark.parametrize("ages, limited", [
    ((), False), ((10, 20), False), ((10, 20, 30), True), ((10, 20, 4000), False),  # the 4000 s one has left
])
@pytest.mark.parametrize("hold", [False, True], ids=["suppress", "hold"])
def test_a_peek_answers_what_the_check_would_and_changes_nothing(window_of, clean_redis, ages, limited, hold):
    now = timezone.now()
    window_of(now, *ages)
    before = redis_state(clean_redis)

    peeked = rate_limits_peek([push_check("n-1", hold)], now)

    assert redis_state(clean_redis) == before
    checked = rate_limits_check([push_check("n-1", hold)], now)
    assert peeked == checked
    assert peeked[0].limited is limited


def test_a_held_peek_names_the_moment_the_window_has_room_again(window_of, clean_redis):
    now = timezone.now().replace(microsecond=0)
    window_of(now, 10, 20, 30)

    verdict = rate_limits_peek([push_check("n-1", hold=True)], now)[0]

    # room comes back when the oldest of the three (30 s old) leaves the hour
    assert verdict.hold_until == now + timedelta(seconds=3600 - 30)
    assert verdict.reason == "rate limited: 3/hour push"


def test_a_notification_counted_already_keeps_its_moment(window_of, clean_redis):
    now = timezone.now()
    window_of(now, 10, 20, 30)
    clean_redis.zadd(PUSH_KEY, {"n-1": int(now.timestamp() * 1000) - 5000})

    assert rate_limits_peek([push_check("n-1")], now) == rate_limits_check([push_check("n-1")], now)
    assert rate_limits_peek([push_check("n-1")], now)[0].limited is False


@pytest.mark.parametrize("per_call", [1, 2, 500])
def test_checks_split_over_several_script_calls_see_each_other_in_order(window_of, clean_redis, monkeypatch,
                                                                        per_call):
    from notifier.pipeline import rate_limits

    monkeypatch.setattr(rate_limits, "CHECKS_PER_CALL", per_call)
    now = timezone.now()
    window_of(now)
    other_user = LimitCheck(user_id="u_8", channel="push", type_key="order_shipped", category="transactional",
                            member="n-x", hold=False)
    no_window = LimitCheck(user_id="u_7", channel="in_app", type_key="order_shipped", category="transactional",
                           member="n-y", hold=False)

    verdicts = rate_limits_check([push_check("n-1"), no_window, push_check("n-2"), other_user, push_check("n-3"),
                                  push_check("n-4"), push_check("n-5", hold=True)], now)

    assert [v.limited for v in verdicts] == [False, False, False, False, False, True, True]
    assert verdicts[5].reason == "rate limited: 3/hour push" and verdicts[5].hold_until is None
    assert verdicts[6].hold_until is not None  # held until the first of the three leaves the hour
    assert clean_redis.zcard(PUSH_KEY) == 4  # n-1..n-3, and n-5's reservation; n-4 was refused
