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

Only a delivery still `sent` changes, so a repeated or late callback (Twilio does not promise order)
changes nothing once a final status is recorded.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator

from notifier.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from notifier.pipeline.dispatch import notifications_refresh_status

log = logging.getLogger(__name__)

STATUS_PATH = "/api/v1/webhooks/twilio/status"
FAILED_STATUSES = {"undelivered", "failed"}
# A notification closed on its deliveries' first outcomes is reopened and closed again when an SMS it
# counted as sent turns out to have failed.
_CLOSED = (NotificationStatus.DELIVERED, NotificationStatus.PARTIALLY_DELIVERED, NotificationStatus.FAILED)


@csrf_exempt
def status_callback(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not signature_is_valid(request):
        log.warning("Twilio: status callback with a missing or bad signature from %s", request.META.get("REMOTE_ADDR"))
        return HttpResponseForbidden("bad X-Twilio-Signature")
    delivery_status_record(
        request.POST.get("MessageSid", ""), request.POST.get("MessageStatus", ""),
        request.POST.get("ErrorCode", ""),
    )
    return HttpResponse(status=204)


def signature_is_valid(request) -> bool:
    config = settings.NOTIFIER_PROVIDER_CONFIG.get("twilio", {})
    auth_token = config.get("auth_token", "")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not auth_token or not signature:
        return False
    url = config.get("status_callback_url") or request.build_absolute_uri()
    return RequestValidator(auth_token).validate(url, request.POST, signature)


def delivery_status_record(message_sid: str, message_status: str, error_code: str = "") -> str:
    """Apply one status callback to the SMS delivery Twilio knows as `message_sid`. Returns the delivery's
    new status, or "" when nothing changed."""
    if message_status == "delivered":
        new_status, changes = DeliveryStatus.DELIVERED, {}
    elif message_status in FAILED_STATUSES:
        new_status = DeliveryStatus.FAILED
        changes = {"failed_at": timezone.now(),
                   "last_error": f"twilio {message_status}: error {error_code or 'unknown'} (status callback)"}
    else:
        return ""
    if not message_sid:
        return ""
    deliveries = Delivery.objects.filter(
        provider_message_id=message_sid, channel="sms", provider="twilio", status=DeliveryStatus.SENT,
    )
    with transaction.atomic():
        notification_ids = list(deliveries.select_for_update().values_list("notification_id", flat=True))
        if not notification_ids or not deliveries.update(status=new_status, **changes):
            log.info("Twilio: status %s for message %s changes nothing", message_status, message_sid)
            return ""
        if new_status == DeliveryStatus.FAILED:
            Notification.objects.filter(id__in=notification_ids, status__in=_CLOSED).update(
                status=NotificationStatus.PROCESSING
            )
            notifications_refresh_status(set(notification_ids))
    log.info("Twilio: message %s %s%s", message_sid, message_status, f" (error {error_code})" if error_code else "")
    return new_status
