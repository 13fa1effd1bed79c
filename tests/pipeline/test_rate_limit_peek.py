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


def test_checks_with_different_windows_in_one_call_each_meet_their_own(clean_redis, settings):
    """One script call carries each set of windows once and every check names its set: checks of
    different channels, types and actions, interleaved, are each decided by their own windows."""
    settings.NOTIFIER_RATE_LIMITS = {"channel": {"push": (3, 3600), "email": (1, 60)},
                                     "type": {"promo": (2, 86400), "marketing": (5, 86400)}}
    now = timezone.now()

    def check(member, channel, type_key="order_shipped", category="transactional", hold=False):
        return LimitCheck(user_id="u_7", channel=channel, type_key=type_key, category=category, member=member,
                          hold=hold)

    verdicts = rate_limits_check([
        check("p-1", "push"), check("m-1", "email", "promo", "marketing"), check("p-2", "push"),
        check("m-2", "push", "promo", "marketing"), check("m-3", "push", "promo", "marketing", hold=True),
        check("m-4", "email", "promo", "marketing"), check("p-3", "push"), check("p-4", "push"),
    ], now)

    assert [v.reason for v in verdicts] == [
        "", "", "",
        "",  # push: its third of the hour; promo: its second of the day
        "rate limited: 2/day promo",  # held: promo's two of the day are used up
        "rate limited: 1/minute email",  # email's one a minute (m-1) comes first among its windows
        "rate limited: 3/hour push", "rate limited: 3/hour push",
    ]
    assert verdicts[4].hold_until == now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(days=1) \
        and verdicts[5].hold_until is None
    assert clean_redis.zcard(f"{KEY_PREFIX}type:promo:u_7") == 3  # m-1, m-2, and m-3's reservation
    assert clean_redis.zcard(f"{KEY_PREFIX}type:marketing:u_7") == 3
