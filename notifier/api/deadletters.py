"""Dead letters: list a producer's dead deliveries and replay them (notifier/pipeline/replay.py). Listing and
replaying need the `send` scope: they reach only the producer's own notifications, which `send` already
reads, and a replay sends nothing the producer did not send before."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier import selectors
from notifier.api.errors import ErrorSerializer
from notifier.api.pagination import Keyset, PageQuery
from notifier.models import Channel, Delivery, DeliveryAttempt
from notifier.models.producers import SCOPE_SEND
from notifier.pipeline.replay import NotReplayable, dead_letter_replay, dead_letters_replay

# Newest first, as the delivery_dead index orders them.
DEAD_LETTERS = Keyset(("-failed_at", "-id"), (str, int))
# A bulk replay answers with the reasons of at most this many refusals (and the count of all).
REFUSALS_SHOWN = 100


class DeadLetterFilter(serializers.Serializer):
    """The dead letters a listing shows and a bulk replay replays; every field optional."""

    channel = serializers.ChoiceField(Channel.choices, required=False, help_text="The dead delivery's channel.")
    provider = serializers.CharField(required=False, max_length=32, help_text="The provider of its last attempt.")
    type = serializers.CharField(source="type_key", required=False, max_length=100,
                                 help_text="Its notification's type key.")
    error_code = serializers.CharField(required=False, max_length=64,
                                       help_text="A provider error code any of its attempts got (e.g. 503, 21610).")
    since = serializers.DateTimeField(required=False, help_text="Went dead at or after this time (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Went dead before this time (ISO 8601).")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs


class DeadLetterListQuery(DeadLetterFilter, PageQuery):
    pass


class ReplayRequest(serializers.Serializer):
    channel = serializers.ChoiceField(Channel.choices, required=False,
                                      help_text="Replay to this channel instead of the dead letter's own.")


class NotReplayableError(serializers.ValidationError):
    """A 409 in the validation error's shape, naming the field at fault (`channel`) with the reason."""

    status_code = 409


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "outcome", "provider", "provider_code", "message", "at"]


class DeadLetterSerializer(serializers.ModelSerializer):
    notification_id = serializers.UUIDField()
    user_id = serializers.CharField(source="notification.recipient.user_id")
    type = serializers.CharField(source="notification.type.key")
    errors = DeliveryAttemptSerializer(source="attempt_history", many=True,
                                       help_text="Every attempt, first first, with how it ended.")
    replayed_as = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "notification_id", "user_id", "type", "channel", "target", "provider", "priority",
                  "attempts", "last_error", "failed_at", "errors", "replayed_as"]

    def get_replayed_as(self, dead) -> int | None:
        """The id of the delivery that replayed this one, or null."""
        replay = getattr(dead, "replayed_as", None)  # a reverse one-to-one raises when there is none
        return replay.id if replay else None


class DeadLetterPageSerializer(serializers.Serializer):
    dead_letters = DeadLetterSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


REPLAY_ANSWER = inline_serializer("DeadLetterReplay", {
    "delivery_id": serializers.IntegerField(help_text="The replay: a new delivery, queued now."),
    "replayed_from": serializers.IntegerField(),
    "channel": serializers.CharField(),
    "created": serializers.BooleanField(help_text="false: the dead letter had been replayed; this is that replay."),
})
BULK_REPLAY_ANSWER = inline_serializer("DeadLetterBulkReplay", {
    "replayed": serializers.IntegerField(),
    "refused": serializers.IntegerField(help_text="Dead letters that could not be replayed (see refusals)."),
    "refusals": inline_serializer("DeadLetterRefusal", {
        "delivery_id": serializers.IntegerField(), "reason": serializers.CharField()}, many=True),
    "remaining": serializers.IntegerField(help_text="Matching dead letters beyond this call's limit: call again."),
})


class DeadLetterListView(APIView):
    required_scopes = {"GET": SCOPE_SEND}

    @extend_schema(parameters=[DeadLetterListQuery], responses={
        200: DeadLetterPageSerializer, 400: OpenApiResponse(ErrorSerializer, description="A query field is invalid."),
    })
    def get(self, request):
        query = DeadLetterListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        cursor, limit = filters.pop("cursor", None), filters.pop("limit")
        dead, next_cursor = DEAD_LETTERS.page(selectors.dead_letters(request.user, **filters), cursor, limit)
        return Response({"dead_letters": DeadLetterSerializer(dead, many=True).data, "next_cursor": next_cursor})


class DeadLetterReplayView(APIView):
    required_scopes = {"POST": SCOPE_SEND}

    @extend_schema(operation_id="dead_letter_replay", request=ReplayRequest, responses={
        202: REPLAY_ANSWER,
        400: OpenApiResponse(ErrorSerializer, description="The body is invalid (an unknown channel)."),
        404: OpenApiResponse(ErrorSerializer, description="This producer has no dead delivery with this id."),
        409: OpenApiResponse(ErrorSerializer, description="It cannot be replayed as asked: `fields` names `channel` (the "
                                                "user cannot be reached on it, no template) or `delivery_id` "
                                                "(the notification was cancelled or expired) with the reason."),
    })
    def post(self, request, delivery_id):
        body = ReplayRequest(data=request.data)
        body.is_valid(raise_exception=True)
        if not (delivery_id.isascii() and delivery_id.isdigit() and int(delivery_id) < 2 ** 63):
            raise Http404("No dead delivery with this id.")
        try:
            replay = dead_letter_replay(request.user, int(delivery_id), body.validated_data.get("channel"))
        except NotReplayable as error:
            raise NotReplayableError({error.field: [error.reason]})
        if replay is None:
            raise Http404("No dead delivery with this id.")
        return Response({"delivery_id": replay.delivery.id, "replayed_from": int(delivery_id),
                         "channel": replay.delivery.channel, "created": replay.created},
                        status=status.HTTP_202_ACCEPTED)


class DeadLetterBulkReplayView(APIView):
    """Replays the dead letters the same query fields list, not yet replayed, newest first, at most
    pipeline.replay.BULK_REPLAY_MAX per call."""

    required_scopes = {"POST": SCOPE_SEND}

    @extend_schema(operation_id="dead_letters_bulk_replay", parameters=[DeadLetterFilter], request=ReplayRequest,
                   responses={
        202: BULK_REPLAY_ANSWER,
        400: OpenApiResponse(ErrorSerializer, description="A query field or the body is invalid."),
    })
    def post(self, request):
        query = DeadLetterFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = ReplayRequest(data=request.data)
        body.is_valid(raise_exception=True)
        result = dead_letters_replay(request.user, query.validated_data, body.validated_data.get("channel"))
        refusals = [{"delivery_id": delivery_id, "reason": refusal.reason}
                    for delivery_id, refusal in list(result.refused.items())[:REFUSALS_SHOWN]]
        return Response({"replayed": result.replayed, "refused": len(result.refused), "refusals": refusals,
                         "remaining": result.remaining}, status=status.HTTP_202_ACCEPTED)
