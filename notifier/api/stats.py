"""GET /api/v1/stats: delivery counts, rates and accept → provider latency over a window, in total, per
channel and per type (notifier/stats.py says what each figure counts).

A key with the `send` scope reads the figures of its own notifications only; a key that also has `admin`
reads every producer's. Producers are separate services: one must not learn another's volumes.
"""
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.api.errors import ErrorSerializer
from notifier.api.serializers import NotificationTypeKeyField
from notifier.models import Channel, Priority
from notifier.models.producers import SCOPE_ADMIN, SCOPE_SEND
from notifier.stats import StatsFilter, delivery_stats

DEFAULT_WINDOW = timedelta(hours=24)
# A calendar month at most: a longer window reads more rows than an API call should (BENCHMARKS.md,
# "Stats query": a 30-day window over 10,000,000 deliveries).
MAX_WINDOW = timedelta(days=31)


class StatsQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text=(
        "Deliveries of notifications accepted (or, if scheduled, due) at or after this time; ISO 8601, UTC "
        "without an offset. Default: 24 hours before `until`."))
    until = serializers.DateTimeField(required=False, help_text=(
        "… and before this time. Default: now. At most 31 days after `since`."))
    channel = serializers.ChoiceField(Channel.choices, required=False)
    type = NotificationTypeKeyField(required=False, help_text="A notification type's key.")
    priority = serializers.ChoiceField(Priority.choices, required=False)

    def validate(self, attrs):
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - DEFAULT_WINDOW
        if since >= until:
            field = "since" if "since" in attrs else "until"
            raise serializers.ValidationError({field: ["since must be earlier than until (default: now)."]})
        if until - since > MAX_WINDOW:
            raise serializers.ValidationError({"since": ["The window is at most 31 days long."]})
        return {**attrs, "since": since, "until": until}


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class StatsFiguresSerializer(serializers.Serializer):
    deliveries = serializers.IntegerField(help_text="Every delivery in the window, whatever its status.")
    sent = serializers.IntegerField(help_text="Accepted by the provider.")
    delivered = serializers.IntegerField(help_text="Confirmed delivered (by the provider, or an open or click).")
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Status failed (a permanent error) or dead (retries exhausted).")
    bounced = serializers.IntegerField()
    delivery_rate = serializers.FloatField(allow_null=True, help_text="delivered / sent; null if none was sent.")
    open_rate = serializers.FloatField(allow_null=True, help_text="opened / delivered.")
    click_rate = serializers.FloatField(allow_null=True, help_text="clicked / delivered.")
    latency_ms = LatencySerializer(help_text=(
        "Percentiles of accept (or due) → provider accepted, over the sent deliveries, in milliseconds; null "
        "when none was sent, and always on SQLite."))


class ChannelStatsSerializer(StatsFiguresSerializer):
    channel = serializers.ChoiceField(Channel.choices)


class TypeStatsSerializer(StatsFiguresSerializer):
    type = serializers.CharField(help_text="The notification type's key.")


class StatsSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    producer = serializers.CharField(allow_null=True, help_text=(
        "Whose notifications these are: the caller's name, or null for every producer's (an admin key)."))
    totals = StatsFiguresSerializer()
    by_channel = ChannelStatsSerializer(many=True, help_text="Channels with deliveries in the window.")
    by_type = TypeStatsSerializer(many=True, help_text="Types with deliveries in the window.")


class StatsView(APIView):
    required_scopes = {"GET": SCOPE_SEND}

    @extend_schema(operation_id="stats", parameters=[StatsQuery], responses={
        200: StatsSerializer, 400: OpenApiResponse(ErrorSerializer, description="A query field is invalid."),
    })
    def get(self, request):
        query = StatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = query.validated_data
        every_producer = request.user.has_scope(SCOPE_ADMIN)
        stats_filter = StatsFilter(
            since=fields["since"], until=fields["until"],
            producer_id=None if every_producer else request.user.id,
            channel=fields.get("channel"), priority=fields.get("priority"),
            type_id=fields["type"].id if fields.get("type") else None,
        )
        figures = delivery_stats(stats_filter)
        return Response(StatsSerializer({
            "since": fields["since"], "until": fields["until"],
            "producer": None if every_producer else request.user.name, **figures,
        }).data)
