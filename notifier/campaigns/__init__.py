"""Campaigns: one message to a segment of users (docs/campaigns.md).

    segments.py  the segment a campaign reaches: user ids, a topic, everyone, or a filter (JSON → ORM)
    counts.py    how routing decisions are counted (targeted, eligible, suppressed by reason)
    fanout.py    the fan-out: chunks of the segment by recipient id, each routed once by the route step's rules
    windows.py   send windows: a local time of day per recipient, or an even spread
    throttle.py  the campaign's max_per_second, a token bucket in Redis shared by all workers
    service.py   create, dry run, pause, resume, cancel, progress
"""
