"""Public endpoints an email's reader reaches, without a key: one-click unsubscribe, the open pixel and the
click redirect. Each is authorised by the signed token in its URL alone.

    GET  /api/v1/unsubscribe/<token>    a confirmation page with a button; changes nothing (mail scanners
                                        and link previews follow GETs)
    POST /api/v1/unsubscribe/<token>    RFC 8058 one-click unsubscribe (body `List-Unsubscribe=One-Click`,
                                        or the page's button): no cookies, no CSRF token; idempotent
    GET  /api/v1/t/o/<token>.gif        the open pixel: a 1x1 transparent GIF, never cached
    GET  /api/v1/t/c/<token>            the click redirect: 302 to the link's URL in the stored email

A bad or changed token answers 400. These views never answer 500 for what a request brings: recording an
open or a click is best effort (the reader gets the GIF or the redirect even if the database fails), and
an unknown delivery still gets the GIF (opens of purged deliveries are nothing to report). A click on a
delivery that no longer exists answers 404: its target URL is known only from the delivery's row.
"""
from __future__ import annotations

import base64
import logging
import uuid

from django.core import signing
from django.db import DatabaseError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifier.models import Category, Delivery, DeliveryStatus, EventSource, Notification, NotificationType, Recipient
from notifier.pipeline.render import unsubscribe_token_read
from notifier.metrics import webhook_event_count
from notifier.pipeline.status import StatusEvent, delivery_events_apply
from notifier.preference_links import preferences_link_issue
from notifier.services import recipient_unsubscribe
from notifier.tracking import click_target, click_token_read, open_token_read
from notifier.validation import text_problem

log = logging.getLogger(__name__)

# A 1x1 GIF whose one pixel is the transparent colour (its graphic control extension says so): 43 bytes.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE = "no-store, no-cache, must-revalidate, private, max-age=0"
USER_AGENT_MAX_CHARS = 512


# --- unsubscribe ---------------------------------------------------------------------------------------

@csrf_exempt  # RFC 8058: the mailbox provider POSTs with no cookie and no token; the signed URL is the proof
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    try:
        link = unsubscribe_token_read(token)
    except signing.BadSignature:
        return _page(request, "notifier/link_error.html", 400, heading="This unsubscribe link is not valid",
                     message="The link is incomplete or was changed. Open it again from the email, or copy "
                             "the whole link into your browser.")
    recipient_id = Recipient.objects.filter(user_id=link["user_id"]).values_list("id", flat=True).first()
    if recipient_id is None:
        return _user_gone(request)
    category = unsubscribe_category(link["type_key"])
    # Both pages offer the rest of the user's choices: their preference center.
    preferences_url, _ = preferences_link_issue(link["user_id"])
    if request.method == "POST":
        try:
            recipient_unsubscribe(recipient_id, category, source="link", channel="email", type_key=link["type_key"],
                                  notification=_notification(link["notification_id"], recipient_id))
        except Recipient.DoesNotExist:  # deleted since the lookup above
            return _user_gone(request)
        return _page(request, "notifier/unsubscribe_done.html", 200, category=category,
                     preferences_url=preferences_url)
    return _page(request, "notifier/unsubscribe_confirm.html", 200, category=category, action=request.path,
                 preferences_url=preferences_url)


def _user_gone(request) -> HttpResponse:
    # A genuine link of a user who has since been deleted: there is nothing left to unsubscribe, and nothing
    # will be sent to them.
    return _page(request, "notifier/link_error.html", 404, heading="No subscription found",
                 message="We have no subscription for this link any more; you will not receive email from it.")


def unsubscribe_category(type_key: str) -> str:
    """What a link of this type unsubscribes from (recipient_unsubscribe takes a category or a type key):
    the marketing category, as the link promises. If the type has since been deleted, or made
    transactional or system, only the type itself: an old link must not mute a user's receipts."""
    category = NotificationType.objects.filter(key=type_key).values_list("category", flat=True).first()
    return category if category == Category.MARKETING else type_key


def _notification(notification_id: str | None, recipient_id: int):
    """The notification the link came in, for the Unsubscription's history, if it still exists."""
    if notification_id is None:
        return None
    try:
        notification_id = uuid.UUID(notification_id)
    except ValueError:
        return None
    return Notification.objects.filter(id=notification_id, recipient_id=recipient_id).only("id").first()


def _page(request, template: str, status: int, **context) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Cache-Control"] = NO_CACHE
    return response


# --- open pixel and click redirect ---------------------------------------------------------------------

@require_http_methods(["GET", "HEAD"])
def open_pixel(request, token: str):
    try:
        delivery_id = open_token_read(token)
    except signing.BadSignature:
        webhook_event_count(EventSource.PIXEL, "forged")
        return HttpResponse("bad tracking token", status=400, content_type="text/plain")
    if request.method == "GET":  # a HEAD fetches no image: nobody saw it
        _record(delivery_id, DeliveryStatus.OPENED, EventSource.PIXEL, {"user_agent": _user_agent(request)})
    response = HttpResponse(PIXEL_GIF, content_type="image/gif")
    response["Cache-Control"] = NO_CACHE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response


@require_http_methods(["GET", "HEAD"])
def click_redirect(request, token: str):
    try:
        delivery_id, index = click_token_read(token)
    except signing.BadSignature:
        webhook_event_count(EventSource.CLICK, "forged")
        return _page(request, "notifier/link_error.html", 400, heading="This link is not valid",
                     message="The link is incomplete or was changed. Open it again from the email.")
    try:
        content = Delivery.objects.filter(id=delivery_id).values_list("content", flat=True).first()
    except DatabaseError as error:
        log.warning("tracking: could not read delivery %s for a click: %s", delivery_id, error)
        return _page(request, "notifier/link_error.html", 503, heading="Please try again",
                     message="We could not open this link just now. Try again in a moment.")
    url = click_target((content or {}).get("html_body", ""), index) if isinstance(content, dict) else None
    if url is None:
        return _page(request, "notifier/link_error.html", 404, heading="This link has expired",
                     message="The email this link came from is no longer available.")
    if request.method == "GET":
        _record(delivery_id, DeliveryStatus.CLICKED, EventSource.CLICK,
                {"url": url, "user_agent": _user_agent(request)})
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = NO_CACHE
    return response


def _record(delivery_id: int, status: str, source: str, payload: dict) -> None:
    """Record an open or a click; the status machine keeps the first of each per delivery. Best effort:
    the reader must get the pixel or the redirect whatever happens here."""
    try:
        changes = delivery_events_apply([StatusEvent(delivery_id, status, source=source, payload=payload)])
    except DatabaseError as error:
        log.warning("tracking: could not record %s of delivery %s: %s", status, delivery_id, error)
        webhook_event_count(source, "failed")
        return
    webhook_event_count(source, "applied" if changes else "ignored")


def _user_agent(request) -> str:
    user_agent = request.headers.get("User-Agent", "")[:USER_AGENT_MAX_CHARS]
    return "" if text_problem(user_agent) else user_agent
