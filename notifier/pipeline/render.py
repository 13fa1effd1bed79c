"""Render a template for one notification on one channel.

Django's template language. HTML email autoescapes variables; everything else (push, SMS, the text part
of an email, in-app) is plain text and must not turn "&" into "&amp;". The render Context, not the engine,
decides autoescaping, so one engine serves both.
"""
from __future__ import annotations

from functools import lru_cache

from django.template import Context, Engine

from notifier.models import Template

_TEXT_FIELDS = ("subject", "title", "body", "action_url")

_engine = Engine()


class RenderError(Exception):
    """A template cannot be rendered for this notification (a required variable is missing, bad syntax)."""


@lru_cache(maxsize=2048)
def _compile(source: str):
    # Compiling costs far more than rendering; the same few templates render thousands of times.
    return _engine.from_string(source)


def template_syntax_error(source: str) -> str | None:
    """Why a template source does not compile, or None when it does."""
    try:
        _compile(source)
    except Exception as error:
        return f"Template syntax error: {error}"
    return None


def variables_for(notification_type, data: dict) -> dict:
    return {**notification_type.variable_defaults(), **data}


def missing_variables(notification_type, data: dict) -> list[str]:
    variables = variables_for(notification_type, data)
    return [name for name in notification_type.required_variables() if name not in variables]


def template_render(template: Template, notification_type, data: dict) -> dict:
    """The rendered content of one message: subject, title, body, html_body, action_url."""
    missing = missing_variables(notification_type, data)
    if missing:
        raise RenderError(f"missing required variables: {', '.join(missing)}")
    variables = variables_for(notification_type, data)
    content = {}
    try:
        for name in _TEXT_FIELDS:
            source = getattr(template, name)
            content[name] = _compile(source).render(Context(variables, autoescape=False)).strip() if source else ""
        content["html_body"] = (
            _compile(template.html_body).render(Context(variables, autoescape=True))
            if template.html_body
            else ""
        )
    except Exception as error:  # TemplateSyntaxError and anything a filter raises
        raise RenderError(f"template {template} failed to render: {error}") from error
    return content


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
