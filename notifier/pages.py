"""Pages an end user opens in a browser: the hosted preference center (notifier/preference_center.py) and
the inbox widget's demo. Thin: each translates the request into the service calls and renders a template.

Every input goes through notifier.validation (the token in the path and every form field); a bad or
expired link answers a page that says so (400 / 410), never a 500."""
from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import ValidationError

from notifier.api.auth import recipient_token_issue
from notifier.api.preferences import preferences_update
from notifier.models import Recipient
from notifier.preference_center import preference_center_document, preference_center_view, preferences_from_form
from notifier.preference_links import LinkError, preferences_link_issue, preferences_link_read
from notifier.services import recipient_upsert
from notifier.validation import text_problem

NO_STORE = "no-store, private, max-age=0"
# The preferences API names a bad field by its path in the document; the page by what the user sees.
FIELD_LABELS = {"quiet_hours.start": "Quiet hours from", "quiet_hours.end": "Quiet hours until",
                "quiet_hours.timezone": "Time zone", "language": "Language", "digest": "Bundle notifications"}


@require_http_methods(["GET", "HEAD", "POST"])
def preference_center(request, token: str):
    try:
        if text_problem(token):
            raise LinkError()
        user_id = preferences_link_read(token)
    except LinkError as error:
        return _link_error(request, error.expired)
    recipient = Recipient.objects.filter(user_id=user_id).first() or Recipient(user_id=user_id)
    stored = preference_center_document(recipient)
    if request.method != "POST":
        return _preferences_page(request, stored, saved=request.GET.get("saved") == "1")
    problems = _form_problems(request.POST)
    if problems:
        return _preferences_page(request, stored, errors=problems, status=400)
    document = preferences_from_form(request.POST, stored)
    try:
        preferences_update(user_id, document, partial=False)
    except ValidationError as error:
        errors = {FIELD_LABELS.get(name, name): " ".join(map(str, messages)) for name, messages in error.detail.items()}
        shown = {**document, "timezone": (document["quiet_hours"] or {}).get("timezone") or stored["timezone"]}
        return _preferences_page(request, shown, errors=errors, status=400)
    # Post/redirect/get: a reload does not post again, and the page shows what was stored.
    return HttpResponseRedirect(f"{request.path}?saved=1", status=303)


def _form_problems(form) -> dict[str, str]:
    """The fields whose name or value notifier.validation refuses (a NUL byte, a control character), each
    with the reason; a refused name is shown as "form", never as it came."""
    problems = {}
    for name, values in form.lists():
        problem = text_problem(name) or next((found for value in values if (found := text_problem(value))), None)
        if problem:
            problems["form" if text_problem(name) else name] = problem
    return problems


def _preferences_page(request, document: dict, saved: bool = False, errors: dict | None = None, status: int = 200):
    context = {**preference_center_view(document), **brand(), "saved": saved, "errors": errors or {}}
    return _no_store(render(request, "notifier/preferences.html", context, status=status))


def _link_error(request, expired: bool) -> HttpResponse:
    if expired:
        heading, message, status = ("This link has expired",
                                    "For your security, preference links work for a limited time. Open the link "
                                    "in a more recent email, or use “Notification settings” in the app.", 410)
    else:
        heading, message, status = ("This link is not valid",
                                    "The link is incomplete or was changed. Open it again from the email, or copy "
                                    "the whole link into your browser.", 400)
    return _no_store(render(request, "notifier/link_error.html", {"heading": heading, "message": message, **brand()},
                            status=status))


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = NO_STORE  # the page shows one user's settings
    return response


def brand() -> dict:
    """The branding settings, and a text colour readable on the accent (WCAG: 4.5:1 or better with one of
    black or white, whichever contrasts more)."""
    accent = settings.NOTIFIER_BRAND_ACCENT_COLOR
    digits = accent[1:] if len(accent) == 7 else "".join(c * 2 for c in accent[1:])
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    on_accent = "#000000" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "#ffffff"
    return {"brand_name": settings.NOTIFIER_BRAND_NAME, "brand_logo_url": settings.NOTIFIER_BRAND_LOGO_URL,
            "brand_accent": accent, "brand_on_accent": on_accent}


@require_http_methods(["GET", "HEAD"])
def demo_inbox(request):
    """The inbox widget for the demo user, with a link to their preference center (NOTIFIER_DEMO_PAGES)."""
    if not settings.NOTIFIER_DEMO_PAGES:
        raise Http404
    user_id = settings.NOTIFIER_DEMO_USER_ID
    recipient, _ = recipient_upsert(user_id)
    preferences_link, _ = preferences_link_issue(user_id)
    return _no_store(render(request, "notifier/demo_inbox.html", {
        "user_id": user_id,
        "token": recipient_token_issue(user_id, recipient.id),
        "api": request.build_absolute_uri("/").rstrip("/"),
        "stream": settings.NOTIFIER_INBOX_STREAM_URL,
        "preferences_url": preferences_link,
        **brand(),
    }))
