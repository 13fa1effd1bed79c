"""A user's notification preferences: may this notification use this channel?

Resolution, first match wins:

1. a critical type (security alert, verification code) is always allowed: opt-outs do not apply;
2. a marketing type needs the user's `marketing_opt_in`;
3. a type-level override (`type_preferences[type.key][channel]`);
4. a category-level override (`type_preferences[type.category][channel]`);
5. the channel switch (`channel_preferences[channel]`);
6. the default (settings.NOTIFIER_DEFAULT_CHANNEL_PREFERENCES).

The preferences are fields of Recipient, which the route step already loads with each notification, so
resolving them costs no query and no cache: a change applies to the very next notification routed.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from notifier.models import Category


@dataclass(frozen=True)
class ChannelVerdict:
    allowed: bool
    reason: str = ""  # why not; or, when allowed despite an opt-out, why (a critical type)


def channel_verdict(recipient, notification_type, channel: str) -> ChannelVerdict:
    """Whether the recipient's preferences let this type use this channel, and why not."""
    blocked = _blocked_reason(recipient, notification_type, channel)
    if blocked and notification_type.critical:
        return ChannelVerdict(True, f"critical type: sent despite '{blocked}'")
    if blocked:
        return ChannelVerdict(False, blocked)
    return ChannelVerdict(True)


def _blocked_reason(recipient, notification_type, channel: str) -> str:
    if notification_type.category == Category.MARKETING and not recipient.marketing_opt_in:
        return "marketing not opted in"
    enabled, level = preference_choice(recipient, notification_type.key, notification_type.category, channel)
    if enabled:
        return ""
    if level == "type":
        return f"type opted out ({notification_type.key} on {channel})"
    if level == "category":
        return f"category opted out ({notification_type.category} on {channel})"
    return "channel disabled by user"


def preference_choice(preferences, type_key: str | None, category: str | None, channel: str) -> tuple[bool, str]:
    """The user's own switch for a type (or, with type_key None, a category; with both None, the channel)
    on a channel, and the level it comes from: "type", "category", "channel" or "default" (rules 3 to 6;
    the critical and marketing rules are the caller's). `preferences` is a Recipient, or anything with its
    `type_preferences` and `channel_preferences`: the preference center asks it of a form's values."""
    by_type = _as_dict(preferences.type_preferences)
    for level, scope in (("type", type_key), ("category", category)):
        choice = _choice(by_type.get(scope), channel) if scope is not None else None
        if choice is not None:
            return choice, level
    channel_choice = _choice(preferences.channel_preferences, channel)
    if channel_choice is not None:
        return channel_choice, "channel"
    return settings.NOTIFIER_DEFAULT_CHANNEL_PREFERENCES.get(channel, True), "default"


# The API and the admin store only objects of channel: true/false. A malformed entry that got in anyway
# counts as absent, so one bad row cannot make the route step raise and roll back its whole batch.
def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _choice(entries, channel: str) -> bool | None:
    choice = _as_dict(entries).get(channel)
    return choice if isinstance(choice, bool) else None


def preferences_document(recipient) -> dict:
    """The preferences as the API shows them, every channel filled in."""
    quiet_hours = None
    if recipient.quiet_hours_start is not None and recipient.quiet_hours_end is not None:
        quiet_hours = {
            "start": recipient.quiet_hours_start.strftime("%H:%M"),
            "end": recipient.quiet_hours_end.strftime("%H:%M"),
            "timezone": recipient.timezone or "UTC",
        }
    return {
        "channels": {**settings.NOTIFIER_DEFAULT_CHANNEL_PREFERENCES, **_as_dict(recipient.channel_preferences)},
        "types": _as_dict(recipient.type_preferences),
        "quiet_hours": quiet_hours,
        "language": recipient.language,
        "marketing_opt_in": recipient.marketing_opt_in,
        "digest": recipient.digest,
    }
