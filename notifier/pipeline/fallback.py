"""Fallback channels: when a notification's channels reach no one, try the next channel, then the next.

A notification's `fallback_channels` (its request's, else its type's `default_fallback_channels`, stored on
the notification when it is routed, without the channels it already uses) are tried in order, once each:

- The primary channels (and an escalation's) have reached no one when none of their deliveries succeeded
  or is still in flight and at least one of them failed, died or bounced, or a channel had no target,
  template or known name (decision `skipped` or `failed`). A notification whose channels were only
  suppressed (the user opted out, a rate limit) or digested does not fall back: the user said no, or will
  hear of it in the digest.
- A fallback that reaches no one (it failed, had no target, was suppressed, expired) passes on to the next.
- Never after any delivery succeeded, never while one is in flight or an escalation is pending, never
  after a delivery was cancelled (someone stopped the notification).

A fallback step is "route this notification on channel X": the route step's per-channel rules
(preferences, target, template, quiet hours, rate limits) decide it (pipeline/route.py, `_route_step`),
and its decision, tagged `"step": "fallback"`, says why ("fallback: push failed on 2 devices (…)"). The
channels already decided are the ones tried, so the next is the first fallback channel without a decision.

Exactly once: the deliver step starts a fallback while it holds the notification's row lock
(dispatch.notifications_refresh_status), so two workers recording the last two outcomes at once start
one fallback: the second counts after the first committed, and finds the fallback's delivery in flight.
A primary channel with no target falls back at routing already.

These are plain functions of a notification and its deliveries (saved or not); route.py applies them.
"""
from __future__ import annotations

from notifier.models import DELIVERY_IN_FLIGHT_STATUSES, DELIVERY_SUCCESS_STATUSES, DeliveryStatus

FAILED_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.DEAD, DeliveryStatus.BOUNCED)
FALLBACK = "fallback"
# What a channel's targets are called in a decision's reason: "push failed on 2 devices".
_TARGET_NOUNS = {"push": ("device", "devices"), "email": ("address", "addresses"), "sms": ("number", "numbers"),
                 "in_app": ("inbox", "inboxes")}
_ERROR_CHARACTERS = 120


def fallback_channels_resolve(notification) -> list[str]:
    """The fallback channels a notification will use: its own, else its type's, in order, without
    repeats and without a channel it uses already (its channels and its escalation's)."""
    chosen = notification.fallback_channels
    if chosen is None:
        chosen = notification.type.default_fallback_channels
    if not isinstance(chosen, list):  # the API and admin refuse these; a row edited around them must not raise
        return []
    primary = notification.channels or notification.type.default_channels
    used = set(primary if isinstance(primary, list) else []) | set(escalation_channels(notification))
    return [channel for channel in dict.fromkeys(chosen) if channel not in used]


def escalation_channels(notification) -> list[str]:
    return (notification.escalation or {}).get("channels", [])


def fallback_next_channel(notification) -> str | None:
    """The first fallback channel not tried yet, or None when none is left."""
    decided = {decision["channel"] for decision in notification.decisions}
    return next((c for c in notification.fallback_channels or [] if c not in decided), None)


def fallback_due(notification, deliveries) -> bool:
    """Whether the next fallback channel should be tried now: one is left, and what was tried so far
    reached no one (the rules in this module's docstring). `deliveries`: all of the notification's."""
    if fallback_next_channel(notification) is None or notification.escalate_at is not None:
        return False
    if any(d.status in DELIVERY_SUCCESS_STATUSES or d.status in DELIVERY_IN_FLIGHT_STATUSES
           or d.status == DeliveryStatus.CANCELLED for d in deliveries):
        return False
    decisions = notification.decisions
    if any(d["decision"] == "digested" for d in decisions):
        return False
    if any(d.get("step") == FALLBACK for d in decisions):
        return True  # a fallback that reached no one passes on to the next
    return any(d.status in FAILED_STATUSES for d in deliveries) or any(
        d["decision"] in ("skipped", "failed") and d["channel"] != "*" and "step" not in d for d in decisions
    )


def fallback_reason(notification, deliveries) -> str:
    """Why the next fallback is tried: what the last channels tried did ("push failed on 2 devices
    (apns permanent: BadDeviceToken; …)"), the primary channels first, then each fallback in turn."""
    fallbacks = [d for d in notification.decisions if d.get("step") == FALLBACK]
    if fallbacks:
        channels = [fallbacks[-1]["channel"]]
    else:
        channels = list(dict.fromkeys(d["channel"] for d in notification.decisions if d["channel"] != "*"))
    last_decision = {d["channel"]: d for d in notification.decisions}
    parts = []
    for channel in channels:
        on_channel = [d for d in deliveries if d.channel == channel]
        if not on_channel:
            decision = last_decision[channel]
            # A step's reason starts with its cause (why it was tried): only what happened on the channel.
            reason = decision["reason"].removeprefix(decision.get("cause", "")).removeprefix("; ")
            parts.append(f"{channel} {decision['decision']}" + (f": {reason}" if reason else ""))
            continue
        singular, plural = _TARGET_NOUNS.get(channel, ("target", "targets"))
        noun = singular if len(on_channel) == 1 else plural
        errors = dict.fromkeys((d.last_error or d.status_reason or d.status)[:_ERROR_CHARACTERS] for d in on_channel)
        parts.append(f"{channel} failed on {len(on_channel)} {noun} ({'; '.join(errors)})")
    return "; ".join(parts)
