"""Campaigns, for a producer key with the `campaigns` scope (notifier/campaigns/service.py does the work):

    POST /api/v1/campaigns                      create (202), or with "dry_run": true estimate it (200)
    GET  /api/v1/campaigns                      this producer's campaigns, newest first, a page at a time
    GET  /api/v1/campaigns/{campaign_id}        one, with its counters
    POST /api/v1/campaigns/{campaign_id}/pause  running or scheduled → paused
    POST /api/v1/campaigns/{campaign_id}/resume paused → running
    POST /api/v1/campaigns/{campaign_id}/cancel scheduled, running or paused → cancelled

A move the campaign's status does not allow is a 409 naming that status. Another producer's campaign, or
an id that is not one, is a 404. The request body may be larger than a notification's (a {"user_ids"}
segment lists up to 100,000 ids): NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.api.errors import ErrorSerializer
from notifier.api.pagination import Keyset, PageQuery
from notifier.api.quota import ProducerQuotaThrottle
from notifier.api.serializers import NotificationTypeKeyField, _known_timezones, channels_named_once, fields_validate
from notifier.api.views import IdempotencyKeyInFlightError, IdempotencyKeyReused, with_idempotency_header
from notifier.campaigns import dry_run, segments
from notifier.campaigns.service import (
    CampaignMoveRefused,
    CampaignSpec,
    campaign_build,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_progress,
    campaign_resume,
)
from notifier.models import Campaign, CampaignStatus, Channel
from notifier.models.producers import SCOPE_CAMPAIGNS
from notifier.pipeline.accept import IdempotencyConflict, IdempotencyKeyInFlight, request_fingerprint
from notifier.pipeline.render import variable_errors
from notifier.validation import data_size_problem

HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SPREAD_MAX_SECONDS = 7 * 24 * 3600
THROTTLE_MAX_PER_SECOND = 100_000
# Newest first; the id breaks ties between campaigns created in the same microsecond.
CAMPAIGNS = Keyset(("-created_at", "id"), (datetime, uuid.UUID))


def _unknown_fields(data: dict, known) -> dict:
    return {name: ["Unknown field."] for name in sorted(set(data) - set(known))}


def _strict_int_error(data: dict, name: str, what: str) -> list[str] | None:
    # Not "600", 600.0 or true: DRF's IntegerField takes all three.
    if name in data and type(data[name]) is not int:
        return [f"Must be an integer {what}."]
    return None


class SendWindowSerializer(serializers.Serializer):
    """`send_window`: exactly one of a local time of day ({"local_time": "09:00", "timezone_fallback":
    "UTC"}: at the next 09:00 on each recipient's own clock, in timezone_fallback for a recipient without a
    time zone) or an even spread ({"spread_seconds": 14400}: over four hours). Quiet hours still apply."""

    local_time = serializers.CharField(required=False, help_text="HH:MM, 24-hour, on the recipient's clock.")
    timezone_fallback = serializers.CharField(required=False, help_text=(
        "An IANA time zone for recipients without one; UTC when absent. Only with local_time."))
    spread_seconds = serializers.IntegerField(required=False, min_value=1, max_value=SPREAD_MAX_SECONDS,
                                              help_text="1 second to 7 days.")

    def validate_local_time(self, value):
        if not HH_MM.match(value):
            raise serializers.ValidationError("Must be a time of day as HH:MM, e.g. 09:00.")
        return value

    def validate_timezone_fallback(self, value):
        if value not in _known_timezones():
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin).")
        return value

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                'Must be an object: {"local_time": "09:00", "timezone_fallback": "UTC"} or {"spread_seconds": 14400}.')
        attrs, errors = fields_validate(self, data)
        errors = _unknown_fields(data, self.fields) | errors
        if problem := _strict_int_error(data, "spread_seconds", "number of seconds"):
            errors["spread_seconds"] = problem
        if ("local_time" in data) == ("spread_seconds" in data):
            errors.setdefault("local_time", []).append("Give either local_time or spread_seconds, not both and not neither.")
        elif "timezone_fallback" in data and "local_time" not in data:
            errors["timezone_fallback"] = ["Only with local_time."]
        if errors:
            raise serializers.ValidationError(errors)
        if "local_time" in attrs:
            return {"local_time": attrs["local_time"], "timezone_fallback": attrs.get("timezone_fallback", "UTC")}
        return {"spread_seconds": attrs["spread_seconds"]}


class ThrottleSerializer(serializers.Serializer):
    """`throttle`: at most this many of the campaign's sends a second, over all workers (a token bucket in
    Redis), below the providers' own rates."""

    max_per_second = serializers.IntegerField(min_value=1, max_value=THROTTLE_MAX_PER_SECOND,
                                              help_text="1 to 100,000.")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError('Must be an object: {"max_per_second": 1000}.')
        attrs, errors = fields_validate(self, data)
        errors = _unknown_fields(data, self.fields) | errors
        if problem := _strict_int_error(data, "max_per_second", "number of sends a second"):
            errors["max_per_second"] = problem
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


@extend_schema_field({
    "type": "object",
    "description": 'One of {"user_ids": ["u_1", …]} (up to 100,000), {"topic": "sports"}, {"all": true}, or '
                   '{"filter": {…}} (docs/campaigns.md). An error names the part: segment.filter.all[1].gt.',
    "example": {"user_ids": ["u_1", "u_2"]},
})
class SegmentField(serializers.Field):
    """`segment`, read by segments.segment_parse; its SegmentError becomes an error on the part it names."""

    def to_internal_value(self, data):
        try:
            return segments.segment_parse(data, path="segment")
        except segments.SegmentError as error:
            if error.path == "segment":
                raise serializers.ValidationError([error.message])
            # "segment.filter.all[1].gt" → {"filter.all[1].gt": [...]}: flatten_errors puts "segment." back.
            raise serializers.ValidationError({error.path.removeprefix("segment."): [error.message]})

    def to_representation(self, value):
        return value


class CampaignRequestSerializer(serializers.Serializer):
    """POST /api/v1/campaigns."""

    name = serializers.CharField(max_length=200, help_text="For people: the admin and the list show it.")
    type = NotificationTypeKeyField()
    data = serializers.DictField(required=False, default=dict, help_text=(
        "The template variables, the same for every recipient (at most NOTIFIER_MAX_DATA_BYTES)."))
    channels = serializers.ListField(child=serializers.ChoiceField(Channel.choices), required=False,
                                     allow_empty=False, validators=[channels_named_once],
                                     help_text="Absent: the type's default channels.")
    segment = SegmentField()
    schedule_at = serializers.DateTimeField(required=False, allow_null=True, help_text=(
        "ISO 8601; without a UTC offset it is UTC. In the future: the campaign waits (status scheduled) until "
        "then; in the past or absent: it starts at once."))
    send_window = SendWindowSerializer(required=False, allow_null=True)
    throttle = ThrottleSerializer(required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=255, required=False, help_text=(
        "The same key and body again answer the same campaign; another body under it is a 422."))
    dry_run = serializers.BooleanField(required=False, default=False, help_text=(
        "true: answer 200 with the estimate, and store and send nothing."))

    def validate_data(self, data):
        if problem := data_size_problem(data):
            raise serializers.ValidationError(problem)
        return data

    def to_internal_value(self, data):
        """Every field, then the type's variables against data, and raise once: a 400 names each bad field."""
        if not isinstance(data, dict):
            raise serializers.ValidationError({"request": ["Must be a JSON object."]})
        attrs, errors = fields_validate(self, data)
        errors = _unknown_fields(data, self.fields) | errors
        if "dry_run" in data and type(data["dry_run"]) is not bool:
            errors["dry_run"] = ["Must be true or false."]
        notification_type = attrs.get("type")
        if notification_type is not None and "data" not in errors:
            for name, problem in variable_errors(notification_type, attrs.get("data", {})).items():
                errors[f"data.{name}"] = [problem]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def validate(self, attrs):
        throttle = attrs.get("throttle")
        attrs["spec"] = CampaignSpec(
            name=attrs["name"], type=attrs["type"], segment=attrs["segment"], data=attrs.get("data", {}),
            channels=attrs.get("channels", []), schedule_at=attrs.get("schedule_at"),
            send_window=attrs.get("send_window"),
            throttle_per_second=throttle["max_per_second"] if throttle else None,
            idempotency_key=attrs.get("idempotency_key", ""),
        )
        return attrs


class CampaignAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(CampaignStatus.choices, help_text=(
        "running once started; scheduled while it waits for schedule_at."))
    estimated_recipients = serializers.IntegerField(help_text="How many recipients the segment reaches now.")


class DryRunSerializer(serializers.Serializer):
    """The estimate of a dry run (notifier/campaigns/dry_run.py): what routing would decide, counted as the
    campaign's chunks count it (notifier/campaigns/counts.py)."""

    targeted = serializers.IntegerField(help_text="Recipients the segment reaches.")
    eligible = serializers.DictField(child=serializers.IntegerField(), help_text="By channel: would be sent.")
    suppressed = serializers.DictField(child=serializers.IntegerField(), help_text=(
        "By reason: opted_out, not_opted_in, no_target, email_suppressed, rate_limited, …"))
    held = serializers.IntegerField(required=False, help_text="Of the eligible: would wait for quiet hours.")


class ChunkProgressSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    done = serializers.IntegerField()


class CampaignCountersSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(help_text="Recipients put in a chunk so far.")
    eligible = serializers.DictField(child=serializers.IntegerField(), help_text="By channel.")
    suppressed = serializers.DictField(child=serializers.IntegerField(), help_text="By reason.")
    held = serializers.IntegerField(help_text="Eligible, but held for quiet hours or a rate-limit window.")
    sent = serializers.IntegerField(help_text="Handed to a provider (sent, delivered, opened or clicked).")
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed or bounced.")
    dead = serializers.IntegerField(help_text="Retries exhausted.")
    cancelled = serializers.IntegerField()
    waiting = serializers.IntegerField(help_text="Queued, held or being sent.")
    chunks = ChunkProgressSerializer()
    percent_done = serializers.FloatField()


class CampaignSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="type.key")
    throttle = serializers.SerializerMethodField()
    segment = serializers.JSONField(help_text='As created; a user-id segment keeps their number: {"user_ids": 3}.')

    class Meta:
        model = Campaign
        fields = ["id", "name", "type", "status", "data", "channels", "segment", "schedule_at", "send_window",
                  "throttle", "idempotency_key", "estimated_recipients", "chunks_created", "created_at",
                  "started_at", "paused_at", "cancelled_at", "completed_at", "fanned_out_at"]

    @extend_schema_field(ThrottleSerializer(allow_null=True))
    def get_throttle(self, campaign) -> dict | None:
        return {"max_per_second": campaign.throttle_per_second} if campaign.throttle_per_second else None


class CampaignDetailSerializer(CampaignSerializer):
    counters = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "counters"]

    @extend_schema_field(CampaignCountersSerializer)
    def get_counters(self, campaign) -> dict:
        return campaign_progress(campaign)


class CampaignPageSerializer(serializers.Serializer):
    campaigns = CampaignSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class CampaignListQuery(PageQuery):
    status = serializers.ChoiceField(CampaignStatus.choices, required=False, help_text="Only campaigns in it.")


class CampaignStatusConflict(exceptions.APIException):
    status_code = 409
    default_code = "campaign_status_conflict"
    default_detail = "The campaign's status does not allow this."


def _campaign_or_404(producer, campaign_id) -> Campaign:
    try:
        campaign_id = uuid.UUID(str(campaign_id))
    except ValueError:
        campaign_id = None
    campaign = Campaign.objects.select_related("type").filter(producer=producer, id=campaign_id).first() \
        if campaign_id else None
    if campaign is None:
        raise exceptions.NotFound(f"No campaign {campaign_id} was created with this producer key.")
    return campaign


class CampaignListView(APIView):
    required_scopes = {"GET": SCOPE_CAMPAIGNS, "POST": SCOPE_CAMPAIGNS}
    throttle_classes = [ProducerQuotaThrottle]

    @extend_schema(operation_id="campaigns_list", summary="This producer's campaigns, newest first",
                   parameters=[CampaignListQuery], responses=CampaignPageSerializer)
    def get(self, request):
        query = CampaignListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        campaigns = Campaign.objects.filter(producer=request.user).select_related("type")
        if query.validated_data.get("status"):
            campaigns = campaigns.filter(status=query.validated_data["status"])
        page, next_cursor = CAMPAIGNS.page(campaigns, query.validated_data.get("cursor"), query.validated_data["limit"])
        return Response({"campaigns": CampaignSerializer(page, many=True).data, "next_cursor": next_cursor})

    @extend_schema(
        operation_id="campaign_create", summary="Create a campaign, or dry run it",
        request=CampaignRequestSerializer,
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
            description="The same as the body's idempotency_key; giving both with different values is a 400.")],
        responses={
            202: CampaignAcceptedSerializer,
            200: OpenApiResponse(DryRunSerializer, description="dry_run: the estimate; nothing stored or sent."),
            409: OpenApiResponse(ErrorSerializer, description="A request with this idempotency key is still being processed."),
            422: OpenApiResponse(ErrorSerializer, description="This idempotency key was used with a different request body."),
        })
    def post(self, request):
        body = with_idempotency_header(request.data, request.headers.get("Idempotency-Key"))
        serializer = CampaignRequestSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        if serializer.validated_data["dry_run"]:
            campaign, user_ids = campaign_build(request.user, spec)
            return Response(dry_run.campaign_dry_run(campaign, user_ids=user_ids))
        spec.fingerprint = request_fingerprint(body)
        try:
            campaign, replayed = campaign_create(request.user, spec)
        except IdempotencyConflict:
            raise IdempotencyKeyReused()
        except IdempotencyKeyInFlight:
            raise IdempotencyKeyInFlightError()
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(CampaignAcceptedSerializer(campaign).data, status=status.HTTP_202_ACCEPTED, headers=headers)


NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such campaign, or another producer's.")


class CampaignDetailView(APIView):
    required_scopes = {"GET": SCOPE_CAMPAIGNS}

    @extend_schema(operation_id="campaign_detail", summary="A campaign, its status and counters",
                   responses={200: CampaignDetailSerializer, 404: NOT_FOUND})
    def get(self, request, campaign_id):
        return Response(CampaignDetailSerializer(_campaign_or_404(request.user, campaign_id)).data)


class CampaignMoveView(APIView):
    """POST …/pause, …/resume or …/cancel: the campaign after the move, with its counters."""

    required_scopes = {"POST": SCOPE_CAMPAIGNS}
    move = None  # the service function, a staticmethod

    def post(self, request, campaign_id):
        campaign = _campaign_or_404(request.user, campaign_id)
        try:
            campaign = self.move(campaign)
        except CampaignMoveRefused as refused:
            raise CampaignStatusConflict(str(refused))
        return Response(CampaignDetailSerializer(campaign).data)


def _move_schema(verb: str, description: str):
    return extend_schema(operation_id=f"campaign_{verb}", summary=f"{verb.capitalize()} a campaign",
                         description=description, request=None,
                         responses={200: CampaignDetailSerializer, 404: NOT_FOUND,
                                    409: OpenApiResponse(ErrorSerializer, description=(
                                        "Its status does not allow it; the message names the status."))})


class CampaignPauseView(CampaignMoveView):
    move = staticmethod(campaign_pause)

    @_move_schema("pause", "running or scheduled → paused: within 2 s no new send of it starts.")
    def post(self, request, campaign_id):
        return super().post(request, campaign_id)


class CampaignResumeView(CampaignMoveView):
    move = staticmethod(campaign_resume)

    @_move_schema("resume", "paused → running: it goes on where it stopped, and sends nothing twice.")
    def post(self, request, campaign_id):
        return super().post(request, campaign_id)


class CampaignCancelView(CampaignMoveView):
    move = staticmethod(campaign_cancel)

    @_move_schema("cancel", "scheduled, running or paused → cancelled: nothing of it not yet sent will be.")
    def post(self, request, campaign_id):
        return super().post(request, campaign_id)
