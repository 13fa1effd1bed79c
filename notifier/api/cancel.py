"""Cancel, for a producer key with the `send` scope:

    POST /api/v1/notifications/{notification_id}/cancel
    POST /api/v1/notifications/cancel  {"idempotency_key": "…"}   every notification of the request sent with it

Both answer 200 with {"notifications": [one answer per notification]}, cancelling again too;
pipeline/cancel.py says what a cancel stops and what each group of the answer means. An unknown id or key,
or another producer's, is a 404.
"""
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.api.errors import ErrorSerializer
from notifier.models import DELIVERY_WAITING_STATUSES, NotificationStatus
from notifier.models.producers import SCOPE_SEND
from notifier.pipeline.cancel import notification_cancel, notifications_cancel_by_key


class CancelDeliverySerializer(serializers.Serializer):
    delivery_id = serializers.IntegerField()
    channel = serializers.CharField()
    target = serializers.CharField(help_text="The device token, address, number or inbox it goes to.")
    status = serializers.CharField(help_text="The delivery's status after the cancel.")


class CancelledDeliverySerializer(CancelDeliverySerializer):
    was = serializers.ChoiceField([*DELIVERY_WAITING_STATUSES, "retrying"], help_text=(
        "How it was waiting: queued, retrying (queued again after a failed attempt) or held."))


class CancelDigestSerializer(serializers.Serializer):
    channel = serializers.CharField()
    digest_batch = serializers.IntegerField()
    removed = serializers.BooleanField(help_text="Taken out of the digest, which was still collecting; false: "
                                                 "the digest had closed and goes as made.")
    digest_notification_id = serializers.UUIDField(
        allow_null=True, help_text="When not removed: the notification whose delivery carries the digest.")


class NotificationCancelSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user_id = serializers.CharField()
    status = serializers.ChoiceField(NotificationStatus.choices, help_text=(
        "After the cancel: cancelled when nothing went out; delivered or partially_delivered when something "
        "did; processing while an in-flight delivery finishes."))
    cancelled_at = serializers.DateTimeField(help_text="When it was first cancelled.")
    cancelled = CancelledDeliverySerializer(many=True, help_text="Deliveries this request cancelled.")
    in_flight = CancelDeliverySerializer(many=True, help_text=(
        "Deliveries a worker had claimed (sending): they finish and may reach the user, but are never retried."))
    already_sent = CancelDeliverySerializer(many=True, help_text="Handed to a provider before the cancel.")
    not_sent = CancelDeliverySerializer(many=True, help_text=(
        "Ended earlier without going out: failed, dead, suppressed, expired, or cancelled by an earlier request."))
    digests = CancelDigestSerializer(many=True, help_text="Each digest it was collected into.")


class CancelAnswerSerializer(serializers.Serializer):
    notifications = NotificationCancelSerializer(many=True)


class CancelByKeyRequestSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=255, help_text=(
        "The idempotency key of the POST /api/v1/notifications request: all its notifications are cancelled."))

    def to_internal_value(self, data):
        unknown = sorted(set(data) - {"idempotency_key"}) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


ANSWER_EXAMPLE = OpenApiExample("Push sent, email cancelled", response_only=True, value={"notifications": [{
    "id": "6f0c2b1e-8d4a-4e57-9a39-3f1f0a7c9b21", "user_id": "u_42", "status": "partially_delivered",
    "cancelled_at": "2026-12-02T10:15:00.123456Z",
    "cancelled": [{"delivery_id": 12, "channel": "email", "target": "u42@example.com", "status": "cancelled",
                   "was": "held"}],
    "in_flight": [],
    "already_sent": [{"delivery_id": 11, "channel": "push", "target": "a1b2c3", "status": "delivered"}],
    "not_sent": [], "digests": [],
}]})
ANSWERED = OpenApiResponse(CancelAnswerSerializer, description=(
    "What became of each delivery. Also when cancelling again: nothing is newly cancelled then."))


class NotificationCancelView(APIView):
    required_scopes = {"POST": SCOPE_SEND}

    @extend_schema(
        operation_id="notification_cancel",
        summary="Cancel a notification",
        description="Cancels every delivery not yet handed to a provider, and says what was cancelled, what a "
                    "worker had already claimed (it finishes) and what had gone out. Harmless to repeat.",
        request=None,
        responses={200: ANSWERED,  # 401, 403 and the rest: notifier.api.schema.error_responses
                   404: OpenApiResponse(ErrorSerializer, description="No such notification, or another producer's.")},
        examples=[ANSWER_EXAMPLE],
    )
    def post(self, request, notification_id):
        answer = notification_cancel(request.user, notification_id)
        if answer is None:
            raise exceptions.NotFound(f"No notification {notification_id} was sent with this producer key.")
        return Response(CancelAnswerSerializer({"notifications": [answer]}).data)


class NotificationCancelByKeyView(APIView):
    required_scopes = {"POST": SCOPE_SEND}

    @extend_schema(
        operation_id="notifications_cancel_by_key",
        summary="Cancel every notification of a request, by its idempotency key",
        description="For a producer that did not keep our ids: cancels every notification that the request "
                    "sent with this idempotency key made (one per recipient), as cancelling each one by id would.",
        request=CancelByKeyRequestSerializer,
        responses={200: ANSWERED,  # 401, 403 and the rest: notifier.api.schema.error_responses
                   400: OpenApiResponse(ErrorSerializer, description="idempotency_key is missing or empty."),
                   404: OpenApiResponse(ErrorSerializer, description="This producer sent nothing with this key.")},
        examples=[ANSWER_EXAMPLE],
    )
    def post(self, request):
        serializer = CancelByKeyRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = serializer.validated_data["idempotency_key"]
        answers = notifications_cancel_by_key(request.user, key)
        if not answers:
            raise exceptions.NotFound(f"No notification was sent with idempotency key {key!r} and this producer key.")
        return Response(CancelAnswerSerializer({"notifications": answers}).data)
