"""Quiet hours: the window maths, as plain functions of `now` (so tests travel in time by passing it).

A window is two local wall-clock times in the user's IANA time zone. `start < end` is a window inside one
day (13:00–15:00); `start > end` crosses midnight (22:00–07:00); `start == end` is no window. A missing or
unknown zone counts as UTC.

The release moment is the next occurrence of `end` on the local clock, turned into an absolute instant by
zoneinfo. Across DST this needs no special case: a window of 22:00–07:00 is 8 or 10 hours long on the
nights the clocks move, and always ends at 07:00 local. An `end` that falls in a spring-forward gap (02:30
on the night 02:00 becomes 03:00) resolves, as zoneinfo does with fold=0, to the instant just after the
gap; an ambiguous `end` (the hour repeated in autumn) resolves to its first occurrence.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo:
    """The user's zone, or UTC when it is missing or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(local_time: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local_time < end
    return local_time >= start or local_time < end


def quiet_hours_release_at(now: datetime, start: time | None, end: time | None, zone_name: str | None) -> datetime | None:
    """When the quiet hours `now` falls in end (an aware UTC datetime), or None when `now` is outside them."""
    if start is None or end is None:
        return None
    tz = zone(zone_name)
    local = now.astimezone(tz)
    if not in_quiet_hours(local.time().replace(tzinfo=None), start, end):
        return None
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    release = _local_instant(day, end, tz)
    if release <= now:  # in the repeated autumn hour, after the first `end`: the second one is next
        release = _local_instant(day, end, tz, fold=1)
    if release <= now:
        release = _local_instant(day + timedelta(days=1), end, tz)
    return release


def _local_instant(day: date, wall: time, tz: ZoneInfo, fold: int = 0) -> datetime:
    return datetime.combine(day, wall, tzinfo=tz).replace(fold=fold).astimezone(UTC)


def describe_release(release_at: datetime, zone_name: str | None) -> str:
    """"07:00 Asia/Karachi": the release moment as the user's clock shows it."""
    tz = zone(zone_name)
    return f"{release_at.astimezone(tz):%H:%M} {tz.key}"
