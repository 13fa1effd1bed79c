"""POST /api/v1/webhooks/twilio/status: Twilio's message status callback.

The Twilio adapter sends `StatusCallback` (TWILIO_STATUS_CALLBACK_URL, by default NOTIFIER_PUBLIC_URL +
STATUS_PATH) with every message; Twilio then posts the message's status changes here, form-encoded:
`MessageSid`, `MessageStatus`, and for failures `ErrorCode`.
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status

The request must carry a valid `X-Twilio-Signature` (HMAC-SHA1 of the URL and the sorted form fields
under the account's auth token, checked with the SDK's RequestValidator): 403 otherwise. The URL signed is
the one Twilio called, which is the configured callback URL (so a proxy in front of us changes nothing);
without one configured, the URL this request arrived at.

    delivered              the delivery becomes delivered
    undelivered, failed    the delivery becomes failed, with Twilio's ErrorCode in last_error
    anything else          (queued, sending, sent, accepted, ...) no change

The status machine (notifier/pipeline/status.py) decides: a repeated or late callback (Twilio does not
promise order) changes nothing once a final status is recorded, and is kept as history. A callback that
arrives before the worker has recorded the message's SID is kept and applied when the SID lands. A failure
reopens a notification that was closed as delivered, so its fallback channels still run.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator

from notifier.api.errors import error_response, method_not_allowed
from notifier.metrics import webhook_event_count
from notifier.models import DeliveryStatus, EventSource
from notifier.pipeline.dispatch import notifications_reopen_on_late_failures
from notifier.pipeline.status import StatusEvent, provider_events_apply

log = logging.getLogger(__name__)

STATUS_PATH = "/api/v1/webhooks/twilio/status"
FAILED_STATUSES = {"undelivered", "failed"}


@csrf_exempt
def status_callback(request):
    if request.method != "POST":
        return method_not_allowed(["POST"])
    if not signature_is_valid(request):
        log.warning("Twilio: status callback with a missing or bad signature from %s", request.META.get("REMOTE_ADDR"))
        webhook_event_count(EventSource.TWILIO, "forged")
        return error_response(403, "permission_denied", "X-Twilio-Signature is missing or does not verify.")
    changed = delivery_status_record(
        request.POST.get("MessageSid", ""), request.POST.get("MessageStatus", ""),
        request.POST.get("ErrorCode", ""), payload=request.POST.dict(),
    )
    webhook_event_count(EventSource.TWILIO, "applied" if changed else "ignored")
    return HttpResponse(status=204)


def signature_is_valid(request) -> bool:
    config = settings.NOTIFIER_PROVIDER_CONFIG.get("twilio", {})
    auth_token = config.get("auth_token", "")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not auth_token or not signature:
        return False
    url = config.get("status_callback_url") or request.build_absolute_uri()
    return RequestValidator(auth_token).validate(url, request.POST, signature)


def delivery_status_record(message_sid: str, message_status: str, error_code: str = "", payload=None) -> str:
    """Apply one status callback to the SMS delivery Twilio knows as `message_sid`, through the status
    machine (pipeline/status.py). Returns the delivery's new status, or "" when nothing changed (yet: a
    callback that beats the worker's record of the SID is kept and applied when the SID lands)."""
    if message_status == "delivered":
        event = StatusEvent(0, DeliveryStatus.DELIVERED, EventSource.TWILIO, payload=payload)
    elif message_status in FAILED_STATUSES:
        event = StatusEvent(0, DeliveryStatus.FAILED, EventSource.TWILIO, payload=payload, fields={
            "last_error": f"twilio {message_status}: error {error_code or 'unknown'} (status callback)"})
    else:
        return ""
    if not message_sid:
        return ""
    with transaction.atomic():
        changes = provider_events_apply("twilio", [(message_sid, event)])
        notifications_reopen_on_late_failures(changes)
    if not changes:
        log.info("Twilio: status %s for message %s changes nothing now", message_status, message_sid)
        return ""
    log.info("Twilio: message %s %s%s", message_sid, message_status, f" (error {error_code})" if error_code else "")
    return changes[0].status
