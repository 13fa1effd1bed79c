"""Render a template for one notification on one channel.

Templates are written by operators, so they run in the sandboxed engine (notifier/templating.py): no tag
libraries, no files, no settings, no Python attributes. HTML email autoescapes variables; everything else
(push, SMS, the text part of an email, in-app) is plain text and must not turn "&" into "&amp;". The
render Context, not the engine, decides autoescaping, so one engine serves both.

A rendered message is checked against its channel's limits here, at render time, with the same functions
the providers use when they send (APNs payload size, SMS segments), so a template that cannot fit fails
in the admin's preview and in the route step's decision, not at the provider after retries.
"""
from __future__ import annotations

import json
import re
import uuid
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.core.exceptions import FieldDoesNotExist
from django.template import Context
from django.template.loader import render_to_string
from django.utils.html import strip_tags
from django.utils.safestring import mark_safe

from notifier.models import Category, Channel, DeliveryStatus, InboxItem, Template
from notifier.pipeline.deliveries import deliveries_build
from notifier.preference_links import preferences_url
from notifier.signatures import sign_object
from notifier.templating import render_capped, sandboxed_engine

_TEXT_FIELDS = ("subject", "title", "body", "action_url")
TEMPLATE_FIELDS = ("subject", "title", "body", "html_body", "action_url")
# Push-only settings of a template, sent as they are (not templates themselves): APNs aps.badge / aps.sound.
PUSH_FIELDS = ("badge", "sound")

# Longer subjects are cut by mail clients and refused by some providers; it is also the model's limit.
EMAIL_SUBJECT_MAX_CHARS = 255
# FCM's limit for a message's notification and data together, like APNs' payload limit.
FCM_MAX_PAYLOAD_BYTES = 4096

VARIABLE_TYPES = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}
UNSUBSCRIBE_VARIABLE = re.compile(r"{{\s*unsubscribe_url\s*(}}|\|)")
PREFERENCES_VARIABLE_PLAIN = re.compile(r"{{\s*preferences_url\s*}}")
_UNSUBSCRIBE_SALT = "notifier.unsubscribe"


class RenderError(Exception):
    """A template cannot be rendered for this notification: a variable is missing or has the wrong type,
    the template does not compile, or the message does not fit its channel's limits."""


@lru_cache(maxsize=2048)
def _compile(source: str):
    # Compiling costs far more than rendering; the same few templates render thousands of times.
    return sandboxed_engine.from_string(source)


def template_syntax_error(source: str) -> str | None:
    """Why a template source does not compile in the sandbox, or None when it does."""
    try:
        _compile(source)
    except Exception as error:
        return f"Template syntax error: {error}"
    return None


def template_problems(notification_type, channel: str, fields: dict) -> dict[str, str]:
    """Why a template cannot be published, by field: syntax errors and refused constructs, and a marketing
    email without an unsubscribe link."""
    problems = {}
    for name in TEMPLATE_FIELDS:
        problem = template_syntax_error(fields.get(name) or "")
        if problem:
            problems[name] = problem
    if channel != Channel.PUSH:
        if fields.get("badge") is not None:
            problems["badge"] = "Only push templates have a badge."
        if fields.get("sound"):
            problems["sound"] = "Only push templates have a sound."
    if (
        notification_type is not None
        and notification_type.category == Category.MARKETING
        and channel == Channel.EMAIL
    ):
        for name in ("html_body", "body"):
            if fields.get(name) and not UNSUBSCRIBE_VARIABLE.search(fields[name]):
                problems[name] = (
                    "Marketing email must contain an unsubscribe link: add {{ unsubscribe_url }}."
                )
    return problems


def variables_schema(notification_type) -> dict[str, dict]:
    """The type's variables schema with malformed parts read as absent: a schema that is not an object is
    {}, a variable whose spec is not an object has no rules. The API and the admin refuse such schemas;
    this keeps a row that got one anyway (SQL, a data migration) from failing every request and every
    route batch that touches the type."""
    variables = notification_type.variables
    if not isinstance(variables, dict):
        return {}
    return {name: spec if isinstance(spec, dict) else {} for name, spec in variables.items()}


def variables_for(notification_type, data: dict) -> dict:
    defaults = {name: spec["default"] for name, spec in variables_schema(notification_type).items()
                if "default" in spec}
    return {**defaults, **data}


def variable_errors(notification_type, data: dict) -> dict[str, str]:
    """What is wrong with a notification's data against its type's variables schema, by variable name:
    a required variable is missing, or a value is not of the declared type."""
    variables = variables_for(notification_type, data)
    errors = {}
    for name, spec in variables_schema(notification_type).items():
        if name not in variables:
            if spec.get("required"):
                errors[name] = f"Required by type '{notification_type.key}'."
            continue
        expected = spec.get("type")
        value = variables[name]
        if expected in VARIABLE_TYPES:
            matches = isinstance(value, VARIABLE_TYPES[expected])
            if expected in ("number", "integer") and isinstance(value, bool):
                matches = False
            if not matches:
                errors[name] = f"Must be of type {expected} (type '{notification_type.key}')."
    return errors


def missing_variables(notification_type, data: dict) -> list[str]:
    variables = variables_for(notification_type, data)
    return [name for name, spec in variables_schema(notification_type).items()
            if spec.get("required") and name not in variables]


class SharedRenders:
    """The renders of a batch whose notifications share one `data` (a campaign chunk's): each template is
    rendered once, not once per recipient. The parts of a message that are the recipient's own, the
    unsubscribe link of a marketing email and every email's preference center link, are rendered as
    placeholders and replaced by each recipient's links; a template that changes a link on its way (a
    filter on it) is rendered per recipient."""

    PLACEHOLDER = "https://notifier.invalid/unsubscribe-placeholder"
    PREFERENCES_PLACEHOLDER = "https://notifier.invalid/preferences-placeholder"

    def __init__(self):
        self._rendered: dict = {}
        self._filtered: dict = {}  # template pk → whether it filters preferences_url

    def render(self, template: Template, notification_type, data: dict, recipient, notification_id) -> dict:
        key = (template.pk, id(data))
        if key not in self._rendered:
            # An error is remembered too: it is the same for every recipient of the batch.
            try:
                self._rendered[key] = template_render(template, notification_type, data, recipient=recipient,
                                                      notification_id=notification_id,
                                                      unsubscribe_link=self.PLACEHOLDER,
                                                      preferences_link=self.PREFERENCES_PLACEHOLDER)
            except RenderError as error:
                self._rendered[key] = error
        shared = self._rendered[key]
        if isinstance(shared, RenderError):
            raise shared
        links = {}
        if "headers" in shared:
            links[self.PLACEHOLDER] = unsubscribe_url(recipient.user_id, notification_type.key, notification_id)
        if template.channel == Channel.EMAIL:
            if template.pk not in self._filtered:
                self._filtered[template.pk] = _preferences_url_filtered(template)
            if self._filtered[template.pk]:
                return template_render(template, notification_type, data, recipient=recipient,
                                       notification_id=notification_id)
            links[self.PREFERENCES_PLACEHOLDER] = preferences_url(recipient.user_id)
        if not links:  # no link of the recipient's own
            return shared
        content = {name: _links_replaced(value, links) if isinstance(value, str) else value
                   for name, value in shared.items()}
        if "headers" in shared:
            content["headers"] = {name: _links_replaced(value, links) for name, value in shared["headers"].items()}
            if unsubscribe_missing(content, links[self.PLACEHOLDER]):
                return template_render(template, notification_type, data, recipient=recipient,
                                       notification_id=notification_id)
        return content


def _links_replaced(text: str, links: dict) -> str:
    for placeholder, link in links.items():
        text = text.replace(placeholder, link)
    return text


def _preferences_url_filtered(template: Template) -> bool:
    """Whether a template uses {{ preferences_url }} other than as it is (a filter, a {% with %}): its
    placeholder could come out changed, so it is rendered per recipient."""
    sources = [getattr(template, name) or "" for name in TEMPLATE_FIELDS]
    return sum(source.count("preferences_url") for source in sources) != sum(
        len(PREFERENCES_VARIABLE_PLAIN.findall(source)) for source in sources)


def template_render(template: Template, notification_type, data: dict, recipient=None, extra: dict | None = None,
                    notification_id=None, unsubscribe_link: str | None = None,
                    preferences_link: str | None = None) -> dict:
    """The rendered content of one message, exactly as it will be sent: subject, title, body, html_body
    (inside the email layout), action_url, for push the template's badge and sound when it sets them, and
    for marketing email the List-Unsubscribe headers.

    Every email template sees `preferences_url`, the recipient's signed link to the hosted preference
    center, which the layout's footer shows too. `extra` adds variables the producer did not send (a
    digest's `digest`); `unsubscribe_link` and `preferences_link` replace the recipient's signed links
    (SharedRenders' placeholders). Raises RenderError.
    """
    missing = missing_variables(notification_type, data)
    if missing:
        raise RenderError(f"missing required variables: {', '.join(missing)}")
    errors = variable_errors(notification_type, data)
    if errors:
        raise RenderError("; ".join(f"variable {name}: {reason}" for name, reason in errors.items()))
    variables = {**variables_for(notification_type, data), **(extra or {})}
    marketing_email = template.channel == Channel.EMAIL and notification_type.category == Category.MARKETING
    if template.channel == Channel.EMAIL:
        variables["preferences_url"] = preferences_link or (preferences_url(recipient.user_id) if recipient else "")
    if marketing_email:
        variables["unsubscribe_url"] = unsubscribe_link or unsubscribe_url(
            recipient.user_id if recipient else "", notification_type.key, notification_id)
    content = {}
    try:
        for name in _TEXT_FIELDS:
            source = getattr(template, name)
            text = render_capped(_compile(source), Context(variables, autoescape=False)) if source else ""
            content[name] = text.strip()
        html = ""
        if template.html_body:
            html = render_capped(_compile(template.html_body), Context(variables, autoescape=True))
    except Exception as error:  # anything a filter raises, and the sandbox's limits (SandboxLimitError)
        raise RenderError(f"template {template} failed to render: {error}") from error
    content["html_body"] = ""
    if template.channel == Channel.EMAIL:
        # A subject is one header line: a newline in it would be a header injection.
        content["subject"] = " ".join(content["subject"].split())
        if html:
            content["html_body"] = email_layout(html, content["subject"], variables.get("unsubscribe_url", ""),
                                                variables["preferences_url"])
            if not content["body"]:
                content["body"] = " ".join(strip_tags(html).split())
                if marketing_email:  # the text made from the HTML loses its links: add the footer back
                    content["body"] += f"\n\nUnsubscribe: {variables['unsubscribe_url']}"
        if marketing_email:
            missing = unsubscribe_missing(content, variables["unsubscribe_url"])
            if missing:
                raise RenderError(
                    f"template {template}: marketing email must show its unsubscribe link in the {missing} part "
                    "(is {{ unsubscribe_url }} inside a comment or a condition that is false?)"
                )
            content["headers"] = {
                # RFC 8058 one-click unsubscribe: mailbox providers POST "List-Unsubscribe=One-Click" here.
                "List-Unsubscribe": f"<{variables['unsubscribe_url']}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
    if template.channel == Channel.PUSH:
        if template.badge is not None:
            content["badge"] = template.badge
        if template.sound:
            content["sound"] = template.sound
    problem = channel_limit_error(template.channel, content, data, notification_type.key, notification_id)
    if problem:
        raise RenderError(f"template {template}: {problem}")
    return content


def unsubscribe_missing(content: dict, url: str) -> str | None:
    """Which part of a rendered marketing email lacks its unsubscribe link ("text" or "HTML"), or None.
    The publish-time check only sees that the source mentions {{ unsubscribe_url }}; this sees the email as
    it will be sent, where a comment or a false condition has removed it."""
    if url not in content.get("body", ""):
        return "text"
    if content.get("html_body") and url not in content["html_body"]:
        return "HTML"
    return None


def email_layout(html: str, subject: str, unsubscribe: str = "", preferences: str = "") -> str:
    """The HTML part inside the base layout (templates/email/base.html), a trusted file rendered by
    Django's regular engine; the template's own HTML was escaped by the sandbox already."""
    layout = render_to_string("email/base.html", {"content": mark_safe(html), "subject": subject,
                                                  "unsubscribe_url": unsubscribe, "preferences_url": preferences})
    return "".join([layout])  # a plain str: whoever shows it next (the admin preview) must escape it


def channel_limit_error(channel: str, content: dict, data: dict, type_key: str = "", notification_id=None) -> str | None:
    """Why a rendered message cannot be sent on its channel, or None when it fits."""
    if channel == Channel.PUSH:
        size = push_payload_size(content, data, type_key, notification_id)
        if size > FCM_MAX_PAYLOAD_BYTES:
            return f"push payload is {size} bytes, over the 4096-byte limit of APNs and FCM"
        size = fcm_payload_size(content, data, notification_id)
        if size > FCM_MAX_PAYLOAD_BYTES:
            return f"FCM payload (notification and data) is {size} bytes, over FCM's 4096-byte limit"
    elif channel == Channel.SMS:
        from notifier.providers.sms_segments import count_segments

        encoding, segments = count_segments(content.get("body", ""))
        limit = sms_max_segments()
        if segments > limit:
            return f"SMS needs {segments} segments ({encoding}), more than the {limit} allowed (SMS_MAX_SEGMENTS)"
    elif channel == Channel.EMAIL:
        if len(content.get("subject", "")) > EMAIL_SUBJECT_MAX_CHARS:
            return f"email subject is {len(content['subject'])} characters, over {EMAIL_SUBJECT_MAX_CHARS}"
    elif channel == Channel.IN_APP:
        # The inbox item's columns are the limits: a value over one would fail the item's insert.
        for name in _TEXT_FIELDS:
            limit = _inbox_column_limit(name)
            if limit is not None and len(content.get(name, "")) > limit:
                return f"in-app {name} is {len(content[name])} characters, over the {limit} the inbox stores"
    return None


def _inbox_column_limit(name: str) -> int | None:
    """The inbox item column's max_length for a rendered field, or None (no such column, or no limit)."""
    try:
        return InboxItem._meta.get_field(name).max_length
    except FieldDoesNotExist:
        return None


def push_payload_size(content: dict, data: dict, type_key: str = "", notification_id=None) -> int:
    """The size of the APNs payload this message makes, measured as the APNs adapter measures it."""
    from notifier.providers.apns import APNsProvider
    from notifier.providers.base import Message

    message = Message(
        delivery_id=0, notification_id=str(notification_id or uuid.UUID(int=0)), channel="push", to="",
        title=content.get("title", ""), body=content.get("body", ""), action_url=content.get("action_url", ""),
        data={"notification_id": str(notification_id or uuid.UUID(int=0)), **data}, type_key=type_key,
        badge=content.get("badge"), sound=content.get("sound", ""),
    )
    return len(json.dumps(APNsProvider.payload_for(message), ensure_ascii=False).encode())


def fcm_payload_size(content: dict, data: dict, notification_id=None) -> int:
    """The size of what FCM's 4096-byte limit counts: the message's notification and data, shaped as the
    FCM adapter shapes them (providers/fcm.py). FCM data values are strings, so other values travel
    JSON-encoded, with their quotes escaped and non-ASCII text as \\u escapes: data that fits in the APNs
    payload can be larger here."""
    strings = {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}
    if content.get("action_url"):
        strings.setdefault("action_url", content["action_url"])
    strings["notification_id"] = str(notification_id or uuid.UUID(int=0))
    payload = {"data": strings}
    notification = {name: content[name] for name in ("title", "body") if content.get(name)}
    if notification:
        payload["notification"] = notification
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())


def render_failed_deliveries(notification, channel: str, targets, template, error: Exception, now) -> list:
    """What a render failure leaves: a failed Delivery per target carrying the error in last_error, so the
    notification's API view and admin page show it on its channel, like a provider's permanent error."""
    return deliveries_build(notification, channel, targets, template, status=DeliveryStatus.FAILED,
                            next_attempt_at=now, failed_at=now, last_error=f"render failed: {error}")


def sms_max_segments() -> int:
    from notifier.providers.twilio import DEFAULT_MAX_SEGMENTS

    return int(settings.NOTIFIER_PROVIDER_CONFIG.get("twilio", {}).get("max_segments", DEFAULT_MAX_SEGMENTS))


def unsubscribe_url(user_id: str, type_key: str, notification_id=None) -> str:
    """A signed one-click unsubscribe link for one user and type (RFC 8058), answered by
    notifier/webhooks/tracking.py. The notification's id ("n") is there for the Unsubscription's history;
    links sent before it was added carry only "u" and "t" and keep working."""
    payload = {"u": user_id, "t": type_key}
    if notification_id is not None:
        payload["n"] = str(notification_id)
    token = sign_object(payload, _UNSUBSCRIBE_SALT, compress=True, timestamped=True)
    return f"{settings.NOTIFIER_PUBLIC_URL.rstrip('/')}/api/v1/unsubscribe/{token}"


def template_choose(templates: dict, type_id: int, channel: str, language: str, default_language: str):
    """The active template for type × channel in the recipient's language, its base language (pt-BR →
    pt), or the type's default language. `templates` maps (type_id, channel, language) → Template."""
    for candidate in (language, language.split("-")[0], default_language):
        template = templates.get((type_id, channel, candidate))
        if template is not None:
            return template
    return None


def active_templates(type_ids) -> dict:
    """All active templates of some types, in one query, keyed for template_choose."""
    return {
        (t.type_id, t.channel, t.language): t
        for t in Template.objects.filter(type_id__in=set(type_ids), active=True)
    }


def unsubscribe_token_read(token: str) -> dict:
    """What an unsubscribe_url token carries: {"user_id", "type_key", "notification_id" (or None)}.
    Tokens never expire (a link in an old email must keep working). Raises signing.BadSignature for a
    token we did not sign or one that was changed."""
    payload = signing.loads(token, salt=_UNSUBSCRIBE_SALT)
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str) or not isinstance(payload.get("t"), str):
        raise signing.BadSignature("not an unsubscribe token")
    notification_id = payload.get("n")
    return {"user_id": payload["u"], "type_key": payload["t"],
            "notification_id": notification_id if isinstance(notification_id, str) else None}
