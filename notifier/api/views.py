"""HTTP in, service call, HTTP out. No logic lives here."""
from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
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

    @extend_schema(request=s.NotificationRequestSerializer, responses={202: dict})
    def post(self, request):
        body = request.data
        if isinstance(body, dict) and "Idempotency-Key" in request.headers and "idempotency_key" not in body:
            body = {**body, "idempotency_key": request.headers["Idempotency-Key"]}
        serializer = s.NotificationRequestSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        try:
            result = notifications_accept(request.user, serializer.validated_data, request_fingerprint(body))
        except IdempotencyConflict:
            raise IdempotencyKeyReused()
        except IdempotencyKeyInFlight:
            raise IdempotencyKeyInFlightError()
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.response, status=status.HTTP_202_ACCEPTED, headers=headers)


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
        recipient, created = services.recipient_upsert(user_id, serializer.validated_data)
        return Response(s.RecipientSerializer(recipient).data, status=201 if created else 200)


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

    @extend_schema(parameters=[s.SandboxMessageQuery], responses=s.SandboxMessageSerializer(many=True))
    def get(self, request):
        query = s.SandboxMessageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = selectors.sandbox_messages(request.user, **query.validated_data)
        return Response({"messages": s.SandboxMessageSerializer(messages, many=True).data})
