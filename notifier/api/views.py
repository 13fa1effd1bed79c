"""HTTP in, service call, HTTP out. No logic lives here."""
from functools import cache

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier import selectors, services
from notifier.api import serializers as s
from notifier.api.auth import recipient_token_issue
from notifier.api.pagination import Keyset, PageQuery
from notifier.api.quota import ProducerQuotaThrottle
from notifier.models import NotificationType, Recipient, Template
from notifier.models.producers import SCOPE_ADMIN, SCOPE_SEND, SCOPE_TOKENS, SCOPE_USERS_READ, SCOPE_USERS_WRITE
from notifier.pipeline.accept import IdempotencyConflict, IdempotencyKeyInFlight, notifications_accept, request_fingerprint


# Keyset orders of the paginated lists (notifier/api/pagination.py); each is unique.
NOTIFICATION_TYPES = Keyset(("key",), (str,))
TEMPLATES = Keyset(("type__key", "channel", "language", "-version"), (str, str, str, int))
DELIVERIES = Keyset(("id",), (int,))
# The notification detail shows this many deliveries; GET notifications/{id}/deliveries pages the rest.
DELIVERIES_IN_DETAIL = 100


class IdempotencyKeyReused(APIException):
    status_code = 422
    default_code = "idempotency_key_reused"
    default_detail = "This idempotency key was used with a different request body."


class IdempotencyKeyInFlightError(APIException):
    status_code = 409
    default_code = "idempotency_key_in_flight"
    default_detail = "A request with this idempotency key is still being processed; retry once it has been answered."


class NotificationCreateView(APIView):
    required_scopes = {"POST": SCOPE_SEND}
    throttle_classes = [ProducerQuotaThrottle]

    @extend_schema(
        request=s.NotificationRequestSerializer,
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
            description="The same as the body's idempotency_key; giving both with different values is a 400.")],
        responses={
            202: s.NotificationsAcceptedSerializer,
            409: OpenApiResponse(description="A request with this idempotency key is still being processed."),
            422: OpenApiResponse(description="This idempotency key was used with a different request body."),
        })
    def post(self, request):
        body = with_idempotency_header(request.data, request.headers.get("Idempotency-Key"))
        accept = s.notification_request_validate(body)
        fingerprint = request_fingerprint(body) if accept.idempotency_key else ""  # only a key is checked against it
        try:
            result = notifications_accept(request.user, accept, fingerprint)
        except IdempotencyConflict:
            raise IdempotencyKeyReused()
        except IdempotencyKeyInFlight:
            raise IdempotencyKeyInFlightError()
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.response, status=status.HTTP_202_ACCEPTED, headers=headers)


def with_idempotency_header(body, header: str | None):
    """The body with the Idempotency-Key header as its idempotency_key. Both given and different is a 400
    naming both: neither silently wins."""
    if not isinstance(body, dict) or header is None:
        return body
    if "idempotency_key" not in body:
        return {**body, "idempotency_key": header}
    if body["idempotency_key"] != header:
        raise ValidationError({"idempotency_key": [
            "Differs from the Idempotency-Key header; send the key in one of them, or the same value in both."]})
    return body


def _notification_or_404(producer, notification_id):
    notification = selectors.notification_for_producer(producer, notification_id)
    if notification is None:
        raise Http404
    return notification


class NotificationDetailView(APIView):
    required_scopes = {"GET": SCOPE_SEND}

    @extend_schema(responses=s.NotificationSerializer)
    def get(self, request, notification_id):
        notification = _notification_or_404(request.user, notification_id)
        notification.deliveries_page, notification.deliveries_next_cursor = DELIVERIES.page(
            selectors.notification_deliveries(notification), None, DELIVERIES_IN_DETAIL)
        return Response(s.NotificationSerializer(notification).data)


class NotificationDeliveryListView(APIView):
    """The rest of a notification's deliveries, after the first DELIVERIES_IN_DETAIL its detail shows."""

    required_scopes = {"GET": SCOPE_SEND}

    @extend_schema(parameters=[PageQuery], responses=s.DeliveryPageSerializer)
    def get(self, request, notification_id):
        query = PageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        notification = _notification_or_404(request.user, notification_id)
        deliveries, next_cursor = DELIVERIES.page(selectors.notification_deliveries(notification),
                                                  query.validated_data.get("cursor"), query.validated_data["limit"])
        return Response({"deliveries": s.DeliverySerializer(deliveries, many=True).data, "next_cursor": next_cursor})


class UserView(APIView):
    required_scopes = {"GET": SCOPE_USERS_READ, "PUT": SCOPE_USERS_WRITE}

    @extend_schema(responses=s.RecipientSerializer)
    def get(self, request, user_id):
        return Response(s.RecipientSerializer(get_object_or_404(Recipient, user_id=user_id)).data)

    @extend_schema(request=s.RecipientSerializer, responses={200: s.RecipientSerializer, 201: s.RecipientSerializer})
    def put(self, request, user_id):
        serializer = s.RecipientSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        recipient, created = services.recipient_save(user_id, serializer.validated_data)
        return Response(s.RecipientSerializer(recipient).data, status=201 if created else 200)


class TopicListView(APIView):
    """A user's topics: what a campaign's {"topic": ...} segment reaches."""

    required_scopes = {"GET": SCOPE_USERS_READ}

    @extend_schema(responses=s.TopicListSerializer)
    def get(self, request, user_id):
        recipient = get_object_or_404(Recipient, user_id=user_id)
        return Response({"topics": s.TopicSerializer(recipient.topics.order_by("topic"), many=True).data})


class TopicDetailView(APIView):
    required_scopes = {"PUT": SCOPE_USERS_WRITE, "DELETE": SCOPE_USERS_WRITE}

    @extend_schema(request=None, responses={200: s.TopicSerializer, 201: s.TopicSerializer})
    def put(self, request, user_id, topic):
        """Subscribe the user (created if new) to the topic: 201, or 200 when subscribed already."""
        recipient, _ = services.recipient_upsert(user_id)
        try:
            subscription, created = services.topic_subscribe(recipient, topic)
        except services.TooManyTopics:
            raise ValidationError({"topic": [f"The user has {services.MAX_TOPICS_PER_USER} topics already, the "
                                             "most one may have; remove one first."]})
        return Response(s.TopicSerializer(subscription).data, status=201 if created else 200)

    @extend_schema(responses={204: None})
    def delete(self, request, user_id, topic):
        """Unsubscribe the user from the topic: 204, or 404 when they were not subscribed."""
        recipient = get_object_or_404(Recipient, user_id=user_id)
        if not services.topic_unsubscribe(recipient, topic):
            raise Http404
        return Response(status=204)


class RecipientTokenView(APIView):
    """Issue a recipient token for an app or browser to read this user's own inbox and preferences."""

    required_scopes = {"POST": SCOPE_TOKENS}

    @extend_schema(request=None, responses={201: dict})
    def post(self, request, user_id):
        recipient, _ = services.recipient_upsert(user_id)
        return Response(
            {"token": recipient_token_issue(user_id, recipient.id), "expires_in": settings.NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS},
            status=201,
        )


class DeviceListView(APIView):
    required_scopes = {"GET": SCOPE_USERS_READ, "POST": SCOPE_USERS_WRITE}

    @extend_schema(responses=s.DeviceSerializer(many=True))
    def get(self, request, user_id):
        recipient = get_object_or_404(Recipient, user_id=user_id)
        return Response(s.DeviceSerializer(recipient.devices.order_by("-created_at"), many=True).data)

    @extend_schema(request=s.DeviceSerializer, responses={200: s.DeviceSerializer, 201: s.DeviceSerializer})
    def post(self, request, user_id):
        serializer = s.DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipient, _ = services.recipient_upsert(user_id)
        device, created = services.device_register(recipient, **serializer.validated_data)
        return Response(s.DeviceSerializer(device).data, status=201 if created else 200)


class DeviceDetailView(APIView):
    required_scopes = {"DELETE": SCOPE_USERS_WRITE}

    @extend_schema(responses={204: None})
    def delete(self, request, user_id, token):
        recipient = get_object_or_404(Recipient, user_id=user_id)
        if not services.device_unregister(recipient, token):
            raise Http404
        return Response(status=204)


class NotificationTypeListView(APIView):
    required_scopes = {"GET": SCOPE_ADMIN, "POST": SCOPE_ADMIN}

    @extend_schema(parameters=[PageQuery], responses=s.NotificationTypePageSerializer)
    def get(self, request):
        query = PageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        types, next_cursor = NOTIFICATION_TYPES.page(NotificationType.objects.all(),
                                                     query.validated_data.get("cursor"), query.validated_data["limit"])
        return Response({"notification_types": s.NotificationTypeSerializer(types, many=True).data,
                         "next_cursor": next_cursor})

    @extend_schema(request=s.NotificationTypeSerializer, responses={201: s.NotificationTypeSerializer})
    def post(self, request):
        serializer = s.NotificationTypeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data, status=201)


class TemplateListView(APIView):
    required_scopes = {"GET": SCOPE_ADMIN, "POST": SCOPE_ADMIN}

    @extend_schema(parameters=[s.TemplateListQuery], responses=s.TemplatePageSerializer)
    def get(self, request):
        query = s.TemplateListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        templates = Template.objects.select_related("type")
        if query.validated_data.get("type"):
            templates = templates.filter(type__key=query.validated_data["type"])
        templates, next_cursor = TEMPLATES.page(templates, query.validated_data.get("cursor"),
                                                query.validated_data["limit"])
        return Response({"templates": s.TemplateSerializer(templates, many=True).data, "next_cursor": next_cursor})

    @extend_schema(request=s.TemplateSerializer, responses={201: s.TemplateSerializer})
    def post(self, request):
        serializer = s.TemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        template = services.template_publish(**serializer.validated_data)
        return Response(s.TemplateSerializer(template).data, status=201)


class SandboxMessageListView(APIView):
    required_scopes = {"GET": SCOPE_SEND}

    @extend_schema(parameters=[s.SandboxMessageQuery], responses=s.SandboxMessageListSerializer)
    def get(self, request):
        query = s.SandboxMessageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = selectors.sandbox_messages(request.user, **query.validated_data)
        return Response({"messages": s.SandboxMessageSerializer(messages, many=True).data})


class ApiIndexView(APIView):
    """GET /api/v1/: what a new user finds at the address `make run` prints. Public, like the schema: it
    lists the resources (their paths as the schema writes them, and methods) and links the schema and its
    docs page."""

    authentication_classes = []
    permission_classes = [AllowAny]
    required_scopes = {}

    @extend_schema(exclude=True)
    def get(self, request):
        return Response({
            "name": settings.SPECTACULAR_SETTINGS["TITLE"],
            "version": settings.SPECTACULAR_SETTINGS["VERSION"],
            "schema": request.build_absolute_uri(reverse("schema")),
            "docs": request.build_absolute_uri(reverse("api-docs")),
            "authentication": "Authorization: Bearer <producer key or recipient token>; see the schema.",
            "resources": api_resources(),
        })


@cache  # the URLconf does not change while the process runs
def api_resources() -> list[dict]:
    """Every API view's path and methods, found as drf-spectacular finds them for the schema, so that an
    endpoint added anywhere (notifier/api/urls.py or the project's urls.py) is listed."""
    from drf_spectacular.generators import EndpointEnumerator

    not_resources = {reverse("api-index"), reverse("schema"), reverse("api-docs")}
    methods: dict[str, list[str]] = {}
    for path, _, method, _ in EndpointEnumerator().get_api_endpoints():
        if path.startswith(reverse("api-index")) and path not in not_resources:
            methods.setdefault(path, []).append(method)
    return [{"path": path, "methods": path_methods} for path, path_methods in methods.items()]
