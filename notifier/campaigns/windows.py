"""Send windows: when a campaign's message reaches each recipient.

- `{"local_time": "09:00", "timezone_fallback": "UTC"}`: at the next 09:00 on each recipient's own clock
  after the campaign starts, so a global campaign rolls around the world over a day. A recipient without a
  known zone uses `timezone_fallback`. The chunk routes every recipient at once and their deliveries wait,
  status `held`, until their moment (beat releases them like quiet-hour holds: pipeline/holds.py), so the
  counters are complete as soon as the fan-out ends, and quiet hours still apply on top.
- `{"spread_seconds": 14400}`: evenly over four hours: the fan-out makes chunk n due at
  start + (n - 1) × spread / chunks (CampaignChunk.due_at).

Local times follow zoneinfo like quiet hours (pipeline/quiet_hours.py): 09:00 on the day clocks change is
09:00 local; a time in a spring-forward gap resolves with the offset from before the gap (02:30 → 03:30
new time), an ambiguous one to its first occurrence.
"""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from math import ceil
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.pipeline.quiet_hours import zone


def window_zone(recipient_zone: str | None, fallback: str | None) -> ZoneInfo:
    """The recipient's zone; the campaign's fallback when the recipient's is missing or unknown."""
    for name in (recipient_zone, fallback):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return zone("UTC")


def local_time_next(after: datetime, local: time, tz: ZoneInfo) -> datetime:
    """The first instant at or after `after` (aware) when the clock in `tz` reads `local` (in UTC)."""
    day = after.astimezone(tz).date()
    for offset in range(3):
        wall = datetime.combine(day + timedelta(days=offset), local)
        instant = _wall_to_utc(wall, tz)
        if instant >= after:
            return instant
    raise AssertionError("unreachable: a wall time recurs every day")


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    # fold=0, as quiet hours: the first of an ambiguous hour; in a gap, the offset from before it, so
    # 02:30 on the night 02:00 becomes 03:00 is 03:30 new time.
    return wall.replace(tzinfo=tz).astimezone(UTC)


def parse_local_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def recipient_send_at(send_window: dict | None, recipient, started_at: datetime) -> datetime | None:
    """When this recipient's message may go under a local_time window; None when it may go now."""
    if not send_window or "local_time" not in send_window:
        return None
    tz = window_zone(recipient.timezone, send_window.get("timezone_fallback"))
    return local_time_next(started_at, parse_local_time(send_window["local_time"]), tz)


def chunk_due_at(send_window: dict | None, started_at: datetime, number: int, estimated_recipients: int,
                 chunk_size: int) -> datetime:
    """When chunk `number` (1-based) may be routed: at once, or its share of a spread window."""
    if not send_window or "spread_seconds" not in send_window:
        return started_at
    chunks = max(1, ceil(estimated_recipients / chunk_size))
    step = send_window["spread_seconds"] / chunks
    return started_at + timedelta(seconds=step * (number - 1))
