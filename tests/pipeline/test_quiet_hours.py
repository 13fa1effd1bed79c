"""The quiet-hours window maths, across time zones and DST changes."""
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from notifier.pipeline.quiet_hours import describe_release, in_quiet_hours, quiet_hours_release_at

ZONES = ["UTC", "Asia/Karachi", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Chatham", "Europe/Berlin", "America/St_Johns"]
KARACHI = "Asia/Karachi"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def local(zone, *args, fold=0):
    return datetime(*args, tzinfo=ZoneInfo(zone)).replace(fold=fold).astimezone(UTC)


def test_a_delivery_at_23_in_karachi_waits_until_7_the_next_morning():
    now = local(KARACHI, 2026, 3, 1, 23, 0)

    release = quiet_hours_release_at(now, time(22), time(7), KARACHI)

    assert release == local(KARACHI, 2026, 3, 2, 7, 0)
    assert describe_release(release, KARACHI) == "07:00 Asia/Karachi"


def test_after_midnight_the_window_ends_the_same_morning():
    assert quiet_hours_release_at(local(KARACHI, 2026, 3, 2, 3, 0), time(22), time(7), KARACHI) == \
        local(KARACHI, 2026, 3, 2, 7, 0)


def test_outside_the_window_nothing_waits():
    assert quiet_hours_release_at(local(KARACHI, 2026, 3, 2, 7, 0), time(22), time(7), KARACHI) is None
    assert quiet_hours_release_at(local(KARACHI, 2026, 3, 2, 21, 59), time(22), time(7), KARACHI) is None


def test_a_window_inside_one_day_ends_that_day():
    assert quiet_hours_release_at(utc(2026, 3, 2, 13, 30), time(13), time(15), "UTC") == utc(2026, 3, 2, 15)
    assert quiet_hours_release_at(utc(2026, 3, 2, 15, 0), time(13), time(15), "UTC") is None


def test_equal_start_and_end_or_no_window_means_no_quiet_hours():
    assert quiet_hours_release_at(utc(2026, 3, 2, 13), time(13), time(13), "UTC") is None
    assert quiet_hours_release_at(utc(2026, 3, 2, 13), None, None, "UTC") is None


def test_a_missing_or_unknown_timezone_counts_as_utc():
    assert quiet_hours_release_at(utc(2026, 3, 2, 23), time(22), time(7), "") == utc(2026, 3, 3, 7)
    assert quiet_hours_release_at(utc(2026, 3, 2, 23), time(22), time(7), "Mars/Olympus") == utc(2026, 3, 3, 7)


def test_on_the_spring_forward_night_the_window_is_an_hour_shorter_and_still_ends_at_7_local():
    # New York, 8 March 2026: 02:00 EST becomes 03:00 EDT.
    now = local("America/New_York", 2026, 3, 7, 23, 0)

    release = quiet_hours_release_at(now, time(22), time(7), "America/New_York")

    assert release == utc(2026, 3, 8, 11, 0)  # 07:00 EDT
    assert release - now == timedelta(hours=7)


def test_on_the_fall_back_night_the_window_is_an_hour_longer():
    # New York, 1 November 2026: 02:00 EDT becomes 01:00 EST.
    now = local("America/New_York", 2026, 10, 31, 23, 0)

    release = quiet_hours_release_at(now, time(22), time(7), "America/New_York")

    assert release == utc(2026, 11, 1, 12, 0)  # 07:00 EST
    assert release - now == timedelta(hours=9)


def test_an_end_inside_the_spring_forward_gap_releases_just_after_the_gap():
    now = local("America/New_York", 2026, 3, 8, 1, 30)

    release = quiet_hours_release_at(now, time(22), time(2, 30), "America/New_York")

    assert release == utc(2026, 3, 8, 7, 30)  # 03:30 EDT: 02:30 never happens that night
    assert release > now


def test_an_end_in_the_repeated_autumn_hour_is_its_next_occurrence():
    # 01:10 EST, the second time the clock shows 01:10 that night; quiet hours end at 01:30.
    now = local("America/New_York", 2026, 11, 1, 1, 10, fold=1)

    release = quiet_hours_release_at(now, time(22), time(1, 30), "America/New_York")

    assert release == now + timedelta(minutes=20)


times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))


@settings(max_examples=400, deadline=None)
@given(now=instants, start=times, end=times, zone=st.sampled_from(ZONES))
def test_a_held_delivery_is_released_at_the_first_moment_the_window_is_over(now, start, end, zone):
    release = quiet_hours_release_at(now, start, end, zone)
    local_now = now.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None)

    if not in_quiet_hours(local_now, start, end):
        assert release is None
        return
    assert release is not None
    # later than now, and never more than a day and a DST shift (Lord Howe moves 30 minutes) away
    assert now < release <= now + timedelta(hours=25)
    # at the release moment the user's clock is out of quiet hours
    release_local = release.astimezone(ZoneInfo(zone))
    assert not in_quiet_hours(release_local.time().replace(tzinfo=None), start, end)
    # and it shows the window's end, unless that wall time did not exist that night (a DST gap)
    if release_local.time().replace(tzinfo=None) != end:
        gap_probe = datetime.combine(release_local.date(), end, tzinfo=ZoneInfo(zone))
        assert gap_probe.astimezone(UTC).astimezone(ZoneInfo(zone)).time() != end
    # and a minute earlier (when that minute was still after now) the user was still in quiet hours
    minute_before = release - timedelta(minutes=1)
    if minute_before > now:
        assert in_quiet_hours(minute_before.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None), start, end)
