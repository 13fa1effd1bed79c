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
import random
import time
import uuid

import orjson

from django.conf import settings
from django.db import close_old_connections, connection
from django.http import Http404, HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier import inbox
from notifier.api.auth import (
    RECIPIENT_TOKEN_PREFIX,
    IsProducerOrSameRecipient,
    ProducerKeyAuthentication,
    RecipientPrincipal,
    bearer_caller,
    recipient_token_principal,
    user_reach_check,
)
from notifier.api.errors import ErrorSerializer
from notifier.api.renderers import ORJSONRenderer
from notifier.inbox_cache import BADGE, PAGE, inbox_cached
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
    return inbox_recipient_id(request.user, user_id)


def inbox_recipient_id(caller, user_id: str) -> int:
    """The recipient row of the inbox `caller` reads (user_reach_check has let it through); Http404 for a user
    notifier does not know."""
    if isinstance(caller, RecipientPrincipal) and caller.recipient_id is not None:
        return caller.recipient_id  # the permission already checked that the token is this user's
    recipient_id = Recipient.objects.filter(user_id=user_id).values_list("id", flat=True).first()
    if recipient_id is None:
        raise Http404
    return recipient_id


def _badge(recipient_id: int) -> dict:
    count, capped = inbox.inbox_unread_count(recipient_id)
    return {"unread_count": count, "unread_count_capped": capped}


# --- the cached reads (notifier/inbox_cache.py) -------------------------------------------------------------

def first_page_body(user_id: str, recipient_id: int) -> bytes:
    """The JSON of GET …/notifications with the default query (the first page, PAGE_DEFAULT items, not
    archived): from the cache, else from the rows (and then cached with the badge)."""
    return inbox_cached(user_id, recipient_id, PAGE, lambda: _first_page_values(recipient_id))


def badge_body(user_id: str, recipient_id: int) -> bytes:
    """The JSON of GET …/notifications/unread-count: from the cache, else from the rows."""
    return inbox_cached(user_id, recipient_id, BADGE, lambda: {BADGE: _json(_badge(recipient_id))})


def _first_page_values(recipient_id: int) -> dict[str, bytes]:
    items, next_cursor = inbox.inbox_page(recipient_id, None, PAGE_DEFAULT)
    badge = _badge(recipient_id)
    page = {"notifications": [inbox.inbox_item_payload(item) for item in items], "next_cursor": next_cursor, **badge}
    return {PAGE: _json(page), BADGE: _json(badge)}


def _json(data) -> bytes:
    return ORJSONRenderer().render(data)


def _json_response(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type=ORJSONRenderer.media_type)


# The first page's query, as an app sends it: no parameter, or these with their defaults.
_FIRST_PAGE_QUERY = {"limit": {str(PAGE_DEFAULT)}, "cursor": {""}, "archived": {"false", "False", "0"}}


def _is_first_page_query(query) -> bool:
    return all(name in _FIRST_PAGE_QUERY and set(values) <= _FIRST_PAGE_QUERY[name] for name, values in query.lists())


def _accepts_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return not accept or "application/json" in accept or "*/*" in accept or "application/*" in accept


def lean_first_page_caller(request, user_id: str) -> int | None:
    """The recipient id when this request is an app's plain read of its own first page (GET, a valid
    recipient token of this user naming its recipient, the default query, JSON accepted), which
    InboxView answers without DRF's request handling: the token is all the authentication and permission
    there is to check. None for anything else, which DRF handles (and refuses) as usual."""
    if request.method != "GET" or not _is_first_page_query(request.GET) or not _accepts_json(request):
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(RECIPIENT_TOKEN_PREFIX):
        return None
    principal = recipient_token_principal(token)
    if principal is None or principal.user_id != user_id or principal.recipient_id is None:
        return None
    return principal.recipient_id


class InboxView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_INBOX_READ}

    def dispatch(self, request, *args, **kwargs):
        # The read every app screen makes, in one Redis round trip on a hit: no DRF request, negotiation or
        # permission classes (lean_first_page_caller makes the same checks), the same answer.
        recipient_id = lean_first_page_caller(request, kwargs["user_id"])
        if recipient_id is None:
            return super().dispatch(request, *args, **kwargs)
        response = _json_response(first_page_body(kwargs["user_id"], recipient_id))
        response["Allow"] = ", ".join(self.allowed_methods)  # as DRF's answer has it
        return response

    @extend_schema(parameters=[InboxPageQuery], responses={200: dict})
    def get(self, request, user_id):
        query = InboxPageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        recipient_id = _recipient_id(request, user_id)
        if not query.validated_data.get("cursor") and query.validated_data["limit"] == PAGE_DEFAULT \
                and not query.validated_data["archived"]:
            return _json_response(first_page_body(user_id, recipient_id))
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
        return _json_response(badge_body(user_id, _recipient_id(request, user_id)))


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


def query_token_caller(token: str) -> RecipientPrincipal | None:
    """The recipient a stream's `?token=rt_…` names; None without one. The browser's EventSource cannot
    send an Authorization header, so the stream also takes a recipient token in its URL. Producer keys
    are never taken from a URL (URLs end up in logs): AuthenticationFailed, as for a bad or expired token."""
    if not token:
        return None
    principal = recipient_token_principal(token)
    if principal is None:
        raise exceptions.AuthenticationFailed("Invalid or expired recipient token.")
    return principal


class RecipientTokenQueryAuthentication(authentication.BaseAuthentication):
    """`?token=rt_…` (query_token_caller), tried after the Authorization header."""

    def authenticate(self, request):
        principal = query_token_caller(request.query_params.get("token", ""))
        return None if principal is None else (principal, None)


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


# --- the stream's rules, for both servers that serve it ---------------------------------------------------
# the API's server (InboxStreamView, a thread per stream) and the stream server (notifier/streams/asgi.py, asyncio:
# what production routes the path to) say the same thing in the same order through these functions.

# How long EventSource waits before it reconnects, in ms: the first line of every stream.
STREAM_RETRY_FRAME = "retry: 2000\n\n"
# A comment line: keeps proxies from closing an idle stream, and tells the server whether the client left.
STREAM_KEEPALIVE_FRAME = ": keepalive\n\n"


def stream_caller(authorization: str, token: str):
    """Who opens a stream: the Authorization header first (a producer key, or a recipient token), else the
    `?token=` recipient token, as InboxStreamView's authentication_classes try them. NotAuthenticated with
    neither; AuthenticationFailed for a bad one (a bad header is refused even beside a good `?token=`)."""
    caller = bearer_caller(authorization) or query_token_caller(token)
    if caller is None:
        raise exceptions.NotAuthenticated()
    return caller


def stream_access(authorization: str, token: str, user_id: str) -> int:
    """The recipient id of the inbox a stream request may read, or the APIException (401, 403, 404) it gets
    instead: the stream server's whole check, as InboxStreamView's authentication and permission classes
    make it. Queries the database (a producer key not cached yet, a user looked up by id)."""
    caller = stream_caller(authorization, token)
    user_reach_check(caller, user_id, SCOPE_INBOX_READ)
    try:
        return inbox_recipient_id(caller, user_id)
    except Http404:
        raise exceptions.NotFound() from None


def stream_replay_after(last_event_id: str) -> int | None:
    """The inbox position a reconnecting stream replays from. Only an id this stream sent is replayed from;
    anything else ("²" is a digit to str.isdigit, not to int; an id beyond a bigint) starts afresh."""
    if last_event_id.isascii() and last_event_id.isdigit() and int(last_event_id) < 2 ** 63:
        return int(last_event_id)
    return None


def stream_opening(recipient_id: int, replay_after: int | None) -> str:
    """What a stream sends first, once it is subscribed (so that nothing committed meanwhile is missed): the
    retry line, the items after Last-Event-ID (at most a page; the client's list loads the rest), the badge."""
    frames = [STREAM_RETRY_FRAME]
    if replay_after is not None:
        missed = InboxItem.objects.filter(recipient_id=recipient_id, id__gt=replay_after).order_by("id")[:PAGE_MAX]
        frames += [inbox.sse_frame("notification", inbox.inbox_item_payload(item), item.id) for item in missed]
    frames.append(stream_badge_frame(recipient_id))
    return "".join(frames)


def stream_badge_frame(recipient_id: int) -> str:
    """The unread_count event a stream sends at its start and after each event (the badge is re-read from
    the rows, never carried in the event)."""
    return inbox.sse_frame("unread_count", _badge(recipient_id))


class StreamClock:
    """When a stream sends a heartbeat and when it ends: a heartbeat after NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS
    without a frame, the end after NOTIFIER_INBOX_STREAM_SECONDS (the client reconnects with Last-Event-ID)."""

    def __init__(self, now=time.monotonic, phase: float | None = None):
        self._now = now
        self.heartbeat = settings.NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS
        self.deadline = now() + settings.NOTIFIER_INBOX_STREAM_SECONDS
        # The first heartbeat comes after a random part of the interval: streams opened together (a page
        # of users, a reconnect after a restart) would otherwise send theirs together, every interval, and
        # 10,000 writes at once hold the stream server's one thread for half a second (BENCHMARKS.md).
        if phase is None:
            phase = random.uniform(0, self.heartbeat)
        self.last_sent = now() - phase

    def wait(self) -> float:
        """How long to wait for the next event before a heartbeat is due; 0 once the stream is over."""
        now = self._now()
        if now >= self.deadline:
            return 0.0
        return max(0.001, min(self.last_sent + self.heartbeat, self.deadline) - now)

    def heartbeat_due(self) -> bool:
        return self._now() - self.last_sent >= self.heartbeat

    def sent(self) -> None:
        self.last_sent = self._now()


class InboxStreamView(APIView):
    """Server-Sent Events: `notification` when an item arrives, `unread_count` at the start and after every
    change. The stream ends after NOTIFIER_INBOX_STREAM_SECONDS (EventSource reconnects by itself with
    Last-Event-ID, and missed items are replayed); a comment line every heartbeat keeps proxies from
    closing it.

    Here each stream holds one of the API server's threads for its life, which the rest of the API needs: this
    view is for a deployment that does not route the path elsewhere (a few streams). Production routes it
    to the stream server (notifier/streams/asgi.py: thousands of streams on one asyncio process, one Redis
    connection), which says the same through the same functions (docs/architecture.md, "The live inbox")."""

    authentication_classes = [ProducerKeyAuthentication, RecipientTokenQueryAuthentication]
    renderer_classes = [ORJSONRenderer, EventStreamRenderer]
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_INBOX_READ}

    @extend_schema(responses={(200, "text/event-stream"): SSE_EVENT_SCHEMA})
    def get(self, request, user_id):
        recipient_id = _recipient_id(request, user_id)
        replay_after = stream_replay_after(request.headers.get("Last-Event-ID", ""))
        response = StreamingHttpResponse(
            _events(user_id, recipient_id, replay_after),
            content_type=STREAM_CONTENT_TYPE,
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response


# SSE is always UTF-8; say so for naive clients.
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def _events(user_id: str, recipient_id: int, replay_after: int | None):
    pubsub = stream_redis().pubsub(ignore_subscribe_messages=True)
    # Subscribe before reading the rows, so nothing committed in between is missed.
    pubsub.subscribe(inbox.inbox_channel(user_id))
    try:
        yield stream_opening(recipient_id, replay_after)
        _release_database()
        clock = StreamClock()
        while wait := clock.wait():
            message = pubsub.get_message(timeout=wait)
            if message is None:
                if clock.heartbeat_due():
                    yield STREAM_KEEPALIVE_FRAME
                    clock.sent()
                continue
            data = message["data"]
            yield data.decode() if isinstance(data, bytes) else data  # the item first, then its badge
            yield stream_badge_frame(recipient_id)
            _release_database()
            clock.sent()
    finally:
        pubsub.close()


def _release_database() -> None:
    # A stream lives for minutes and touches the database only on events: it must not hold a connection
    # (PostgreSQL allows few) while it waits.
    if not connection.in_atomic_block:
        connection.close()
    close_old_connections()
