"""The hosted preference center: a signed link to a page where a user sees and changes their own
notification preferences (notifier/pages.py serves it, templates/notifier/preferences.html shows it).

    GET  /preferences/<token>    the page
    POST /preferences/<token>    the page's form (CSRF-protected): saved, then 303 back to the page

The link is signed and expires (notifier/preference_links.py).

One set of rules: the page shows each switch as pipeline/preferences.py resolves it (preference_choice)
and saves through the preferences API's own preferences_update, with a document built from the form.
Every switch shows what the user will get: a type's switch is its effective choice. Saving stores an
override only where a switch differs from what it would inherit (a type from its category, a category
from the channel), so a category or channel switch goes on governing what the user did not set apart,
types added later included.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from django.utils.translation import get_language_info

from notifier.api.serializers import _known_timezones
from notifier.models import Category, Channel, Digest, NotificationType, Template
from notifier.pipeline.preferences import preference_choice, preferences_document

CHANNEL_LABELS = {Channel.PUSH: "Push", Channel.EMAIL: "Email", Channel.SMS: "SMS", Channel.IN_APP: "In-app"}
CATEGORY_LABELS = {Category.TRANSACTIONAL: "Account and orders", Category.MARKETING: "News and offers",
                   Category.SYSTEM: "Service updates"}
DIGEST_LABELS = {Digest.REALTIME: "As they happen", Digest.HOURLY: "Hourly digest", Digest.DAILY: "Daily digest"}
CRITICAL_REASON = ("Always on: this is a critical notification (such as a security alert), sent whatever "
                   "your settings and quiet hours so that you can protect your account.")


# --- what the page shows -------------------------------------------------------------------------------

@dataclass
class Switch:
    name: str  # the form field: channel.<ch>, category.<category>.<ch> or type.<key>.<ch>
    channel: str
    label: str
    on: bool
    parent: str = ""  # the switch this one inherits from (the page's script follows it)


@dataclass
class Row:
    """One line of switches: a category's, or a type's."""

    label: str
    switches: list[Switch]
    critical: bool = False
    note: str = ""


@dataclass
class Section:
    category: str
    label: str
    all_row: Row
    rows: list[Row] = field(default_factory=list)


def _types():
    return list(NotificationType.objects.order_by("name", "key"))


def _channels_of(notification_type) -> list[str]:
    chosen = notification_type.default_channels if isinstance(notification_type.default_channels, list) else []
    return [channel for channel in Channel.values if channel in chosen]


def preference_center_view(document: dict, types=None) -> dict:
    """The page's switches and fields for a preferences document (preferences_document's shape, or the one
    a rejected form asked for): {"channels": [Switch], "sections": [Section], "quiet_hours", "timezone",
    "language", "languages", "digest", "digests", "marketing_opt_in", "switch_names"}."""
    types = _types() if types is None else types
    preferences = SimpleNamespace(channel_preferences=document.get("channels") or {},
                                  type_preferences=document.get("types") or {})
    channels = [Switch(f"channel.{ch}", ch, CHANNEL_LABELS[ch], preference_choice(preferences, None, None, ch)[0])
                for ch in Channel.values]
    sections = []
    for category in Category.values:
        members = [t for t in types if t.category == category and _channels_of(t)]
        if not members:
            continue
        used = [ch for ch in Channel.values if any(ch in _channels_of(t) for t in members)]
        all_row = Row(f"All {CATEGORY_LABELS[category].lower()}", [
            Switch(f"category.{category}.{ch}", ch, CHANNEL_LABELS[ch],
                   preference_choice(preferences, None, category, ch)[0], parent=f"channel.{ch}") for ch in used])
        section = Section(category, CATEGORY_LABELS[category], all_row)
        for notification_type in members:
            label = notification_type.name or notification_type.key
            switches = [Switch(f"type.{notification_type.key}.{ch}", ch, CHANNEL_LABELS[ch],
                               True if notification_type.critical
                               else preference_choice(preferences, notification_type.key, category, ch)[0],
                               parent=f"category.{category}.{ch}")
                        for ch in _channels_of(notification_type)]
            note = ""
            if category == Category.MARKETING:
                note = "Sent only while “Send me news and offers” (below) is on."
            section.rows.append(Row(label, switches, critical=notification_type.critical,
                                    note=CRITICAL_REASON if notification_type.critical else note))
        sections.append(section)
    quiet_hours = document.get("quiet_hours") or None
    languages = sorted({*Template.objects.values_list("language", flat=True).distinct(), document.get("language") or "en"})
    return {
        "channels": channels,
        "sections": sections,
        "quiet_hours": quiet_hours,
        "timezone": (quiet_hours or {}).get("timezone") or document.get("timezone") or "UTC",
        "timezones": sorted(_known_timezones()),
        "language": document.get("language") or "en",
        "languages": [(code, _language_name(code)) for code in languages],
        "digest": document.get("digest") or Digest.REALTIME,
        "digests": list(DIGEST_LABELS.items()),
        "marketing_opt_in": bool(document.get("marketing_opt_in")),
        "switch_names": ",".join([s.name for s in channels] + [
            s.name for section in sections for row in [section.all_row, *section.rows] if not row.critical
            for s in row.switches]),
    }


def _language_name(code: str) -> str:
    try:
        info = get_language_info(code.lower())
    except KeyError:
        try:
            info = get_language_info(code.split("-")[0].lower())
        except KeyError:
            return code
    return f"{info['name_local']} ({code})"


def preference_center_document(recipient) -> dict:
    """The preferences as the page starts from: the API's document, and the user's time zone."""
    return {**preferences_document(recipient), "timezone": recipient.timezone or "UTC"}


# --- what the form asks for ----------------------------------------------------------------------------

def preferences_from_form(form, stored: dict, types=None) -> dict:
    """The preferences document (the API's PUT shape) a submitted form asks for. `form` maps field names
    to values (a QueryDict's last value each); `stored` is the current document, whose type entries the
    page had no switch for (a channel a type is not sent on, a critical type) are kept as they are."""
    types = _types() if types is None else types
    shown = set(str(form.get("switches", "")).split(","))

    def on(name: str) -> bool:
        return form.get(name) == "on"

    known_scopes = set(Category.values) | {t.key for t in types}
    channels = {ch: on(f"channel.{ch}") for ch in Channel.values if f"channel.{ch}" in shown}
    overrides: dict[str, dict[str, bool]] = {}
    for scope, choices in (stored.get("types") or {}).items():
        if scope in known_scopes and isinstance(choices, dict):
            kept = {ch: value for ch, value in choices.items() if isinstance(value, bool) and ch in Channel.values
                    and _switch_name(scope, ch) not in shown}
            if kept:
                overrides[scope] = kept
    inherited = SimpleNamespace(channel_preferences={**(stored.get("channels") or {}), **channels},
                                type_preferences=overrides)
    # Categories first, then types, each compared with what it would inherit from the level above as the
    # form leaves it.
    for level in ("category", "type"):
        for name in sorted(shown):
            parts = name.split(".")
            if len(parts) != 3 or parts[0] != level or parts[2] not in Channel.values or parts[1] not in known_scopes:
                continue
            _, scope, ch = parts
            category = scope if level == "category" else next((t.category for t in types if t.key == scope), None)
            would_be = preference_choice(inherited, None, category if level == "type" else None, ch)[0]
            if on(name) != would_be:
                overrides.setdefault(scope, {})[ch] = on(name)
    document = {"channels": channels, "types": overrides, "language": form.get("language", ""),
                "digest": form.get("digest", ""), "marketing_opt_in": on("marketing_opt_in"), "quiet_hours": None}
    if on("quiet_hours"):
        document["quiet_hours"] = {"start": form.get("quiet_start", ""), "end": form.get("quiet_end", ""),
                                   "timezone": form.get("timezone", "")}
    return document


def _switch_name(scope: str, channel: str) -> str:
    return f"{'category' if scope in Category.values else 'type'}.{scope}.{channel}"
