"""How a campaign counts its recipients: each channel's routing decision (Notification.decisions, made by
pipeline/route.py) falls in one bucket. Chunks count their decisions with `decisions_count` as they route
(CampaignChunk.counts); the dry run counts the decisions it would make the same way.

    {"eligible": {"email": 980, "push": 410}, "held": 20,
     "suppressed": {"opted_out": 12, "not_opted_in": 3, "no_target": 25, "email_suppressed": 1, ...}}

`held` counts the eligible ones held for quiet hours or a rate-limit window (they are in `eligible` too).
"""
from __future__ import annotations

from collections import Counter

# The start of a decision's reason → its suppressed bucket. Reasons come from pipeline/preferences.py,
# channels/*.targets, pipeline/route.py and pipeline/rate_limits.py; anything else counts as "other".
SUPPRESSED_REASONS = (
    ("marketing not opted in", "not_opted_in"),
    ("type opted out", "opted_out"),
    ("category opted out", "opted_out"),
    ("channel disabled by user", "opted_out"),
    ("rate limited", "rate_limited"),
    ("email address suppressed", "email_suppressed"),
    ("recipient has no", "no_target"),
    ("the SMS provider reported", "sms_opted_out"),
    ("no active", "no_target"),  # "no active device"; "no active ... template" is no_template, above
)


def decision_bucket(decision: dict) -> tuple[str, str]:
    """("eligible", channel), ("held", channel) or ("suppressed", reason key) for one channel's decision."""
    kind, reason = decision.get("decision"), decision.get("reason", "")
    if kind == "queued":
        return "eligible", decision["channel"]
    if kind == "held":
        return "held", decision["channel"]
    if kind == "failed":
        return "suppressed", "render_failed"
    if kind == "digested":
        return "suppressed", "digested"
    if kind == "expired":
        return "suppressed", "expired"
    if reason.startswith("no active") and "template" in reason:
        return "suppressed", "no_template"
    for start, key in SUPPRESSED_REASONS:
        if reason.startswith(start):
            return "suppressed", key
    return "suppressed", "other"


def decisions_count(decision_lists) -> dict:
    """The counts of many notifications' decisions, in the shape CampaignChunk.counts keeps."""
    eligible, suppressed, held = Counter(), Counter(), 0
    for decisions in decision_lists:
        for decision in decisions:
            kind, key = decision_bucket(decision)
            if kind == "held":
                held += 1
                eligible[key] += 1
            elif kind == "eligible":
                eligible[key] += 1
            else:
                suppressed[key] += 1
    return {"eligible": dict(eligible), "suppressed": dict(suppressed), "held": held}


def counts_add(total: dict, counts: dict) -> dict:
    """`counts` added into `total` (both in decisions_count's shape); returns `total`."""
    for group in ("eligible", "suppressed"):
        bucket = total.setdefault(group, {})
        for key, value in counts.get(group, {}).items():
            bucket[key] = bucket.get(key, 0) + value
    total["held"] = total.get("held", 0) + counts.get("held", 0)
    return total
