"""What the admin does with templates and notifications beyond editing rows: preview a template exactly as
it will be sent, compare versions, send a test of the previewed version, resend a notification. Plain functions; the admin views in
notifier/admin.py only turn forms into calls of these."""
from __future__ import annotations

import difflib
import json
import secrets
import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from notifier.channels import CHANNELS
from notifier.models import (
    Channel,
    Delivery,
    Notification,
    NotificationStatus,
    Priority,
    Producer,
    Recipient,
    Template,
)
from notifier.models.producers import hash_key
from notifier.pipeline.accept import AcceptRequest, RecipientEntry, notifications_accept
from notifier.pipeline.deliveries import active_devices, deliveries_build
from notifier.pipeline.render import (
    PUSH_FIELDS,
    TEMPLATE_FIELDS,
    RenderError,
    fcm_payload_size,
    push_payload_size,
    template_render,
    variables_schema,
)
from notifier.pipeline.wake import wake_deliver
from notifier.services import recipient_upsert

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
        preview.details.append(("FCM payload size", f"{fcm_payload_size(content, data)} of 4096 bytes"))
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


def diff_partner(template: Template, others: list[Template], chosen_pk: str | None) -> Template | None:
    """The version to compare `template` with on its diff page: the one chosen, else the one just before it,
    else (for the first version) the one just after it; None when it is the only version."""
    chosen = next((v for v in others if str(v.pk) == chosen_pk), None)
    if chosen is not None:
        return chosen
    older = [v for v in others if v.version < template.version]
    newer = [v for v in others if v.version > template.version]
    if older:
        return max(older, key=lambda v: v.version)
    return min(newer, key=lambda v: v.version) if newer else None


def _lines(value) -> list[str]:
    return [] if value is None else str(value).splitlines()


def admin_producer() -> Producer:
    """The producer that admin test sends and resends are recorded under. It has no usable key."""
    producer, _ = Producer.objects.get_or_create(
        name=ADMIN_PRODUCER,
        defaults={"key_hash": hash_key(secrets.token_hex(32)), "key_hint": "(admin)", "scopes": []},
    )
    return producer


class SendTestError(Exception):
    """A test cannot be sent: the template does not render with the data, or the user is not reachable on
    the template's channel. Nothing was stored."""


def template_send_test(template: Template, user_id: str, data: dict, sent_by: str = "") -> str:
    """Send this exact template version, rendered with `data`, to one user on its channel, and return the
    notification id. It tests the template, not the user's settings: whatever version is active and the
    user's language, opt-outs, quiet hours, rate limits and digests are not consulted (the decision trail
    says so); the Delivery is created here and the channel's high-priority queue is woken after commit.
    Raises SendTestError, having stored nothing."""
    notification_id = uuid.uuid4()
    with transaction.atomic():
        recipient, _ = recipient_upsert(user_id)
        try:
            content = template_render(template, template.type, data, recipient=recipient,
                                      notification_id=notification_id)
        except RenderError as error:
            raise SendTestError(str(error)) from error
        targets, reason = CHANNELS[template.channel].targets(recipient, active_devices([recipient.id])[recipient.id])
        if not targets:
            raise SendTestError(f"{user_id} cannot be reached on {template.channel}: {reason}")
        now = timezone.now()
        note = f"admin test{f' by {sent_by}' if sent_by else ''}: preferences, quiet hours and rate limits not applied"
        notification = Notification.objects.create(
            id=notification_id, producer=admin_producer(), type=template.type, recipient=recipient, data=data,
            channels=[template.channel], priority=Priority.HIGH, status=NotificationStatus.PROCESSING,
            due_at=now, routed_at=now,
            decisions=[{"channel": template.channel, "decision": "queued", "reason": "", "targets": len(targets),
                        "template_version": template.version, "language": template.language, "note": note}],
        )
        Delivery.objects.bulk_create(
            deliveries_build(notification, template.channel, targets, template, content=content, next_attempt_at=now)
        )
        transaction.on_commit(lambda: wake_deliver(template.channel, Priority.HIGH), robust=True)
    return str(notification_id)


def notification_resend(notification: Notification) -> str:
    """Send a notification again as a new notification (same type, recipient, data, channels); the original
    and its deliveries stay as they were. Returns the new id."""
    request = AcceptRequest(type=notification.type,
                            recipients=[RecipientEntry(user_id=notification.recipient.user_id)],
                            data=notification.data, channels=list(notification.channels),
                            priority=notification.priority)
    result = notifications_accept(admin_producer(), request)
    return result.response["notifications"][0]["id"]
