"""The in-app inbox API, for a producer key with the inbox:read scope or the user's own recipient token.

    GET   /api/v1/users/{user_id}/notifications?cursor=&limit=&archived=   newest first, with unread_count
    GET   /api/v1/users/{user_id}/notifications/unread-count                 the badge alone
    PATCH /api/v1/users/{user_id}/notifications/{notification_id}            {"read": true} / {"archived": true}
    POST  /api/v1/users/{user_id}/notifications/mark-all-read
    POST  /api/v1/users/{user_id}/notifications/{notification_id}/events         {"event": "opened"} (the app)
    GET   /api/v1/users/{user_id}/notifications/stream                       Server-Sent Events

Another user's ids answer 404 to a recipient token (IsProducerOrSameRecipient), and an item id of another
user is not found under this user's path.
"""
import time
import uuid

import orjson

from django.conf import settings
from django.db import close_old_connections, connection
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier import inbox
from notifier.api.auth import (
    IsProducerOrSameRecipient,
    ProducerKeyAuthentication,
    RecipientPrincipal,
    recipient_token_principal,
)
from notifier.api.errors import ErrorSerializer
from notifier.api.renderers import ORJSONRenderer
from notifier.models import InboxItem, Recipient
from notifier.models.producers import SCOPE_INBOX_READ
from notifier.redis_client import stream_redis

PAGE_DEFAULT = 20
PAGE_MAX = 100


class InboxPageQuery(serializers.Serializer):
    cursor = serializers.CharField(required=False, allow_blank=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX, default=PAGE_DEFAULT)
    archived = serializers.BooleanField(required=False, default=False)


class InboxItemChange(serializers.Serializer):
    read = serializers.BooleanField(required=False)
    archived = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        unknown = sorted(set(data) - {"read", "archived"}) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        value = super().to_internal_value(data)
        if not value:
            raise serializers.ValidationError({"read": ['Give "read" and/or "archived" (true or false).']})
        return value


def _notification_uuid(notification_id: str) -> uuid.UUID:
    """A notification id from the path; anything that is not a UUID names no notification: 404."""
    try:
        return uuid.UUID(notification_id)
    except ValueError:
        raise Http404


def _recipient_id(request, user_id: str) -> int:
    caller = request.user
    if isinstance(caller, RecipientPrincipal) and caller.recipient_id is not None:
        return caller.recipient_id  # the permission already checked that the token is this user's
    recipient_id = Recipient.objects.filter(user_id=user_id).values_list("id", flat=True).first()
    if recipient_id is None:
        raise Http404
    return recipient_id


def _badge(recipient_id: int) -> dict:
    count, capped = inbox.inbox_unread_count(recipient_id)
    return {"unread_count": count, "unread_count_capped": capped}


class InboxView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_INBOX_READ}

    @extend_schema(parameters=[InboxPageQuery], responses={200: dict})
    def get(self, request, user_id):
        query = InboxPageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        recipient_id = _recipient_id(request, user_id)
        try:
            items, next_cursor = inbox.inbox_page(recipient_id, query.validated_data.get("cursor") or None,
                                                  query.validated_data["limit"], query.validated_data["archived"])
        except inbox.BadCursor as error:
            raise serializers.ValidationError({"cursor": [str(error)]})
        return Response({
            "notifications": [inbox.inbox_item_payload(item) for item in items],
            "next_cursor": next_cursor,
            **_badge(recipient_id),
        })


class InboxUnreadCountView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_INBOX_READ}

    @extend_schema(responses={200: dict})
    def get(self, request, user_id):
        return Response(_badge(_recipient_id(request, user_id)))


class InboxItemView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"PATCH": SCOPE_INBOX_READ}

    @extend_schema(request=InboxItemChange, responses={200: dict})
    def patch(self, request, user_id, notification_id):
        change = InboxItemChange(data=request.data)
        change.is_valid(raise_exception=True)
        notification_id = _notification_uuid(notification_id)
        recipient = Recipient.objects.filter(user_id=user_id).first()
        item = recipient and inbox.inbox_item_update(recipient, notification_id, **change.validated_data)
        if not item:
            raise Http404
        return Response({"notification": inbox.inbox_item_payload(item), **_badge(recipient.id)})


class InboxMarkAllReadView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"POST": SCOPE_INBOX_READ}

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, user_id):
        recipient = Recipient.objects.filter(user_id=user_id).first()
        if recipient is None:
            raise Http404
        return Response({"marked_read": inbox.inbox_mark_all_read(recipient), **_badge(recipient.id)})


class EngagementEvent(serializers.Serializer):
    event = serializers.ChoiceField(choices=inbox.ENGAGEMENT_EVENTS,
                                    help_text="opened and clicked set the deliveries' status; dismissed archives "
                                              "the inbox item.")
    channel = serializers.ChoiceField(choices=inbox.ENGAGEMENT_CHANNELS, required=False,
                                      help_text="The channel the user engaged on; without it, push and in_app both.")

    def to_internal_value(self, data):
        unknown = sorted(set(data) - {"event", "channel"}) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class EngagedDelivery(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    status = serializers.CharField()


class EngagementAnswer(serializers.Serializer):
    event = serializers.CharField()
    deliveries = EngagedDelivery(many=True, help_text="The notification's deliveries on the channel(s), as they "
                                                      "are now.")


class NotificationEventView(APIView):
    """The app reports what the user did with a push or in-app notification: opened, clicked (each recorded
    once per delivery, like an email's open pixel and click) or dismissed."""

    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"POST": SCOPE_INBOX_READ}

    @extend_schema(request=EngagementEvent, responses={
        200: EngagementAnswer,
        400: OpenApiResponse(ErrorSerializer, description="event is missing or unknown, channel is not push or "
                                                          "in_app, or the body has another field (each named)."),
        401: OpenApiResponse(ErrorSerializer, description="No credentials, or a bad or expired one."),
        403: OpenApiResponse(ErrorSerializer, description="A producer key without the inbox:read scope."),
        404: OpenApiResponse(ErrorSerializer, description="The user has no such notification (or the token is "
                                                          "another user's)."),
    })
    def post(self, request, user_id, notification_id):
        report = EngagementEvent(data=request.data)
        report.is_valid(raise_exception=True)
        notification_id = _notification_uuid(notification_id)
        recipient = Recipient.objects.filter(id=_recipient_id(request, user_id)).first()
        deliveries = recipient and inbox.notification_engagement_record(
            recipient, notification_id, report.validated_data["event"], report.validated_data.get("channel"))
        if deliveries is None:
            raise Http404
        return Response({"event": report.validated_data["event"],
                         "deliveries": [{"id": d.id, "channel": d.channel, "status": d.status} for d in deliveries]})


class RecipientTokenQueryAuthentication(authentication.BaseAuthentication):
    """The browser's EventSource cannot send an Authorization header, so the stream also takes a recipient
    token as `?token=rt_…` (tried after the header). Producer keys are never taken from a URL (URLs end up
    in logs)."""

    def authenticate(self, request):
        token = request.query_params.get("token", "")
        if not token:
            return None
        principal = recipient_token_principal(token)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or expired recipient token.")
        return (principal, None)


class EventStreamRenderer(BaseRenderer):
    """Lets a client that asks for `text/event-stream` (EventSource does) through content negotiation;
    the stream itself is a StreamingHttpResponse, and an error before it starts is rendered as JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return orjson.dumps(data) if data is not None else b""


# One event of the stream, as an SSE client parses it (`data` is the JSON text of the payload).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["notification", "unread_count"]},
        "data": {"type": "string", "description": "notification: an inbox item (as GET …/notifications lists "
                                                  "them); unread_count: {unread_count, unread_count_capped}."},
        "id": {"type": "string", "description": "notification events: the inbox position, for Last-Event-ID."},
        "retry": {"type": "integer"},
    },
    "required": ["event", "data"],
}


class InboxStreamView(APIView):
    """Server-Sent Events: `notification` when an item arrives, `unread_count` at the start and after every
    change. The stream ends after NOTIFIER_INBOX_STREAM_SECONDS (EventSource reconnects by itself with
    Last-Event-ID, and missed items are replayed); a comment line every heartbeat keeps proxies from
    closing it. It holds a thread, not a process, for its life: serve the API with gunicorn's gthread
    workers (see Procfile and README)."""

    authentication_classes = [ProducerKeyAuthentication, RecipientTokenQueryAuthentication]
    renderer_classes = [ORJSONRenderer, EventStreamRenderer]
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_INBOX_READ}

    @extend_schema(responses={(200, "text/event-stream"): SSE_EVENT_SCHEMA})
    def get(self, request, user_id):
        recipient_id = _recipient_id(request, user_id)
        last_event_id = request.headers.get("Last-Event-ID", "")
        # Only an id this stream sent is replayed from; anything else ("²" is a digit to str.isdigit, not to
        # int) starts afresh.
        replay_after = int(last_event_id) if last_event_id.isascii() and last_event_id.isdigit() else None
        response = StreamingHttpResponse(
            _events(user_id, recipient_id, replay_after),
            content_type="text/event-stream; charset=utf-8",  # SSE is always UTF-8; say so for naive clients
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response


def _events(user_id: str, recipient_id: int, last_event_id: int | None):
    pubsub = stream_redis().pubsub(ignore_subscribe_messages=True)
    # Subscribe before reading the rows, so nothing committed in between is missed.
    pubsub.subscribe(inbox.inbox_channel(user_id))
    try:
        yield "retry: 2000\n\n"
        if last_event_id is not None:
            missed = InboxItem.objects.filter(recipient_id=recipient_id, id__gt=last_event_id).order_by("id")[:PAGE_MAX]
            for item in missed:
                yield inbox.sse_frame("notification", inbox.inbox_item_payload(item), item.id)
        yield inbox.sse_frame("unread_count", _badge(recipient_id))
        _release_database()
        deadline = time.monotonic() + settings.NOTIFIER_INBOX_STREAM_SECONDS
        heartbeat = settings.NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS
        last_sent = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(heartbeat, remaining))
            if message is None:
                if time.monotonic() - last_sent >= heartbeat:
                    yield ": keepalive\n\n"
                    last_sent = time.monotonic()
                continue
            data = message["data"]
            yield data.decode() if isinstance(data, bytes) else data
            yield inbox.sse_frame("unread_count", _badge(recipient_id))
            _release_database()
            last_sent = time.monotonic()
    finally:
        pubsub.close()


def _release_database() -> None:
    # A stream lives for minutes and touches the database only on events: it must not hold a connection
    # (PostgreSQL allows few) while it waits.
    if not connection.in_atomic_block:
        connection.close()
    close_old_connections()
