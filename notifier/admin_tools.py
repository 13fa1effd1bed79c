"""What the admin does with templates and notifications beyond editing rows: preview a template exactly as
it will be sent, compare versions, send a test, resend a notification. Plain functions; the admin views in
notifier/admin.py only turn forms into calls of these."""
from __future__ import annotations

import difflib
import json
import secrets
from dataclasses import dataclass, field

from notifier.models import Channel, Notification, Producer, Template
from notifier.models.producers import hash_key
from notifier.pipeline.accept import AcceptRequest, RecipientEntry, notifications_accept
from notifier.pipeline.render import PUSH_FIELDS
from notifier.pipeline.render import (
    TEMPLATE_FIELDS,
    RenderError,
    push_payload_size,
    template_render,
    variables_schema,
)

ADMIN_PRODUCER = "admin-console"
_SAMPLES = {"string": "Alice", "number": 3, "integer": 3, "boolean": True, "object": {}, "array": []}


def sample_data(notification_type) -> dict:
    """Data to preview a type's templates with: each variable's example, else its default, else a value of
    its declared type, else its name in angle brackets."""
    data = {}
    for name, spec in variables_schema(notification_type).items():
        if "example" in spec:
            data[name] = spec["example"]
        elif "default" in spec:
            data[name] = spec["default"]
        elif spec.get("type") in _SAMPLES:
            data[name] = _SAMPLES[spec["type"]]
        else:
            data[name] = f"<{name}>"
    return data


@dataclass
class Preview:
    """A template rendered for one channel, with what the channel's provider will see."""

    channel: str
    content: dict = field(default_factory=dict)
    error: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines: size, segments…
    payload: str = ""  # push: the APNs payload as JSON


def template_preview(template: Template, data: dict, user_id: str = "preview-user") -> Preview:
    """Render `template` with `data` through the same code the route step uses (sandbox, layout, limits)."""
    from notifier.models import Recipient

    preview = Preview(channel=template.channel)
    recipient = Recipient(user_id=user_id)
    try:
        preview.content = template_render(template, template.type, data, recipient=recipient)
    except RenderError as error:
        preview.error = str(error)
        return preview
    content = preview.content
    if template.channel == Channel.PUSH:
        from notifier.providers.apns import APNsProvider
        from notifier.providers.base import Message

        message = Message(delivery_id=0, notification_id="00000000-0000-0000-0000-000000000000", channel="push",
                          to="", title=content["title"], body=content["body"], action_url=content["action_url"],
                          data={"notification_id": "00000000-0000-0000-0000-000000000000", **data},
                          type_key=template.type.key, badge=content.get("badge"), sound=content.get("sound", ""))
        preview.payload = json.dumps(APNsProvider.payload_for(message), ensure_ascii=False, indent=2)
        preview.details.append(("payload size", f"{push_payload_size(content, data, template.type.key)} of 4096 bytes"))
    elif template.channel == Channel.SMS:
        from notifier.pipeline.render import sms_max_segments
        from notifier.providers.sms_segments import count_segments

        encoding, segments = count_segments(content["body"])
        preview.details.append(("segments", f"{segments} of at most {sms_max_segments()} ({encoding})"))
        preview.details.append(("characters", str(len(content["body"]))))
    elif template.channel == Channel.EMAIL:
        preview.details.append(("subject length", f"{len(content['subject'])} characters"))
        for name, value in content.get("headers", {}).items():
            preview.details.append((name, value))
    return preview


def template_diff(old: Template, new: Template) -> list[tuple[str, list[str]]]:
    """Unified diffs, field by field, from `old` to `new`; fields that did not change are left out."""
    diffs = []
    for name in (*TEMPLATE_FIELDS, *PUSH_FIELDS):
        before, after = _lines(getattr(old, name)), _lines(getattr(new, name))
        if before != after:
            lines = list(difflib.unified_diff(before, after, f"v{old.version}", f"v{new.version}", lineterm=""))
            diffs.append((name, lines))
    return diffs


def _lines(value) -> list[str]:
    return [] if value is None else str(value).splitlines()


def admin_producer() -> Producer:
    """The producer that admin test sends and resends are recorded under. It has no usable key."""
    producer, _ = Producer.objects.get_or_create(
        name=ADMIN_PRODUCER,
        defaults={"key_hash": hash_key(secrets.token_hex(32)), "key_hint": "(admin)", "scopes": []},
    )
    return producer


def template_send_test(template: Template, user_id: str, data: dict) -> str:
    """Send a test of this template's type on this template's channel to one recipient, through the real
    pipeline (the recipient's language picks the active template, as for any notification). Returns the
    notification id."""
    request = AcceptRequest(type=template.type, recipients=[RecipientEntry(user_id=user_id)], data=data,
                            channels=[template.channel], priority="high")
    result = notifications_accept(admin_producer(), request)
    return result.response["notifications"][0]["id"]


def notification_resend(notification: Notification) -> str:
    """Send a notification again as a new notification (same type, recipient, data, channels); the original
    and its deliveries stay as they were. Returns the new id."""
    request = AcceptRequest(type=notification.type,
                            recipients=[RecipientEntry(user_id=notification.recipient.user_id)],
                            data=notification.data, channels=list(notification.channels),
                            priority=notification.priority)
    result = notifications_accept(admin_producer(), request)
    return result.response["notifications"][0]["id"]
