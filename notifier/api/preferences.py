"""GET/PUT/PATCH /api/v1/users/{user_id}/notification-preferences.

    {"channels": {"push": true, "email": true, "sms": false, "in_app": true},
     "types": {"<type key or category>": {"email": false}},
     "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Asia/Karachi"},   (or null)
     "language": "en", "marketing_opt_in": true, "digest": "realtime|hourly|daily"}

PUT replaces the document (what it leaves out returns to the default); PATCH changes only what it gives,
merging `channels` and each entry of `types` key by key. A producer key (users:read to read, users:write to
change), or a recipient token of the same user (another user's id answers 404), may call it. Every bad
value is a 400 naming its field.
"""
from __future__ import annotations

import re
from datetime import time

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.api.auth import IsProducerOrSameRecipient
from notifier.api.errors import ErrorSerializer
from notifier.api.serializers import LANGUAGE, _known_timezones
from notifier.models import Category, Channel, Digest, NotificationType, Recipient
from notifier.models.producers import SCOPE_TOKENS, SCOPE_USERS_READ, SCOPE_USERS_WRITE
from notifier.pipeline.preferences import preferences_document
from notifier.preference_links import preferences_link_issue
from notifier.services import recipient_upsert

FIELDS = ("channels", "types", "quiet_hours", "language", "marketing_opt_in", "digest")
HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def preferences_validate(document, partial: bool) -> dict:
    """The model field values a document asks for. Raises ValidationError naming every bad field."""
    if not isinstance(document, dict):
        raise serializers.ValidationError({"request": ["Send a JSON object."]})
    errors: dict[str, list[str]] = {}
    values: dict = {}
    for name in sorted(set(document) - set(FIELDS)):
        errors[name] = ["Unknown field."]

    if "channels" in document:
        channels = document["channels"]
        if not isinstance(channels, dict):
            errors["channels"] = ["Must be an object of channel: true/false."]
        else:
            for channel, enabled in channels.items():
                if channel not in Channel.values:
                    errors[f"channels.{channel}"] = [f"Unknown channel; choose from {', '.join(Channel.values)}."]
                elif not isinstance(enabled, bool):
                    errors[f"channels.{channel}"] = ["Must be true or false."]
            values["channel_preferences"] = channels

    if "types" in document:
        types = document["types"]
        if not isinstance(types, dict):
            errors["types"] = ["Must be an object of type key or category: {channel: true/false}."]
        else:
            known = set(Category.values) | set(
                NotificationType.objects.filter(key__in=list(types)).values_list("key", flat=True)
            )
            for scope, channels in types.items():
                if scope not in known:
                    errors[f"types.{scope}"] = ["Unknown notification type or category."]
                elif not isinstance(channels, dict):
                    errors[f"types.{scope}"] = ["Must be an object of channel: true/false."]
                else:
                    for channel, enabled in channels.items():
                        if channel not in Channel.values:
                            errors[f"types.{scope}.{channel}"] = [
                                f"Unknown channel; choose from {', '.join(Channel.values)}."]
                        elif not isinstance(enabled, bool):
                            errors[f"types.{scope}.{channel}"] = ["Must be true or false."]
            values["type_preferences"] = types

    if "quiet_hours" in document:
        quiet_hours = document["quiet_hours"]
        if quiet_hours is None:
            values.update(quiet_hours_start=None, quiet_hours_end=None)
        elif not isinstance(quiet_hours, dict):
            errors["quiet_hours"] = ['Must be null or {"start": "22:00", "end": "07:00", "timezone": "..."}.']
        else:
            for name in sorted(set(quiet_hours) - {"start", "end", "timezone"}):
                errors[f"quiet_hours.{name}"] = ["Unknown field."]
            for name in ("start", "end"):
                match = HH_MM.match(str(quiet_hours.get(name, "")))
                if not match:
                    errors[f"quiet_hours.{name}"] = ["Required: a time as HH:MM, 00:00 to 23:59."]
                else:
                    values[f"quiet_hours_{name}"] = time(int(match[1]), int(match[2]))
            if "timezone" in quiet_hours:
                zone = quiet_hours["timezone"]
                if not isinstance(zone, str) or zone not in _known_timezones():
                    errors["quiet_hours.timezone"] = [f"{zone!r} is not an IANA time zone (e.g. Asia/Karachi)."]
                else:
                    values["timezone"] = zone

    if "language" in document:
        if not isinstance(document["language"], str) or not LANGUAGE.match(document["language"]):
            errors["language"] = [f"{document['language']!r} is not a language tag (e.g. en, pt-BR)."]
        else:
            values["language"] = document["language"]
    if "marketing_opt_in" in document:
        if not isinstance(document["marketing_opt_in"], bool):
            errors["marketing_opt_in"] = ["Must be true or false."]
        else:
            values["marketing_opt_in"] = document["marketing_opt_in"]
    if "digest" in document:
        if document["digest"] not in Digest.values:
            errors["digest"] = [f"Choose from {', '.join(Digest.values)}."]
        else:
            values["digest"] = document["digest"]

    if errors:
        raise serializers.ValidationError(errors)
    if not partial:  # PUT: what the document leaves out returns to the default
        defaults = {"channel_preferences": {}, "type_preferences": {}, "quiet_hours_start": None,
                    "quiet_hours_end": None, "marketing_opt_in": False, "digest": Digest.REALTIME}
        values = {**defaults, **values}
    return values


def preferences_update(user_id: str, document, partial: bool) -> Recipient:
    """Validate and store a user's preferences (creating the user if needed); PATCH merges maps."""
    values = preferences_validate(document, partial)
    with transaction.atomic():
        recipient, _ = recipient_upsert(user_id)
        recipient = Recipient.objects.select_for_update().get(pk=recipient.pk)
        if partial and "channel_preferences" in values:
            values["channel_preferences"] = {**recipient.channel_preferences, **values["channel_preferences"]}
        if partial and "type_preferences" in values:
            merged = dict(recipient.type_preferences)
            for scope, channels in values["type_preferences"].items():
                merged[scope] = {**merged.get(scope, {}), **channels}
            values["type_preferences"] = merged
        for name, value in values.items():
            setattr(recipient, name, value)
        recipient.save(update_fields=[*values, "updated_at"])
    return recipient


class QuietHoursSchema(serializers.Serializer):
    start = serializers.RegexField(HH_MM.pattern, help_text="HH:MM, local time.")
    end = serializers.RegexField(HH_MM.pattern, help_text="HH:MM, local time; before start for an overnight window.")
    timezone = serializers.CharField(required=False, help_text="An IANA time zone, e.g. Asia/Karachi.")


class PreferencesDocumentSchema(serializers.Serializer):
    """The preferences document as the OpenAPI schema shows it (preferences_validate checks it, naming
    every bad field: `types.order_shipped.sms`)."""

    channels = serializers.DictField(child=serializers.BooleanField(), required=False,
                                     help_text="Channel: enabled, e.g. {\"sms\": false}.")
    types = serializers.DictField(child=serializers.DictField(child=serializers.BooleanField()), required=False,
                                  help_text="Type key or category: {channel: enabled}.")
    quiet_hours = QuietHoursSchema(required=False, allow_null=True)
    language = serializers.RegexField(LANGUAGE.pattern, required=False)
    marketing_opt_in = serializers.BooleanField(required=False)
    digest = serializers.ChoiceField(Digest.choices, required=False)


class NotificationPreferencesView(APIView):
    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"GET": SCOPE_USERS_READ, "PUT": SCOPE_USERS_WRITE, "PATCH": SCOPE_USERS_WRITE}

    @extend_schema(responses={200: PreferencesDocumentSchema})
    def get(self, request, user_id):
        return Response(preferences_document(get_object_or_404(Recipient, user_id=user_id)))

    @extend_schema(request=PreferencesDocumentSchema, responses={200: PreferencesDocumentSchema})
    def put(self, request, user_id):
        return Response(preferences_document(preferences_update(user_id, request.data, partial=False)))

    @extend_schema(request=PreferencesDocumentSchema, responses={200: PreferencesDocumentSchema})
    def patch(self, request, user_id):
        return Response(preferences_document(preferences_update(user_id, request.data, partial=True)))


class PreferencesLinkRequest(serializers.Serializer):
    expires_in = serializers.IntegerField(
        required=False, min_value=60, help_text="Seconds the link stays valid (default "
        "NOTIFIER_PREFERENCES_LINK_TTL_SECONDS, at most NOTIFIER_PREFERENCES_LINK_MAX_TTL_SECONDS).")

    def validate_expires_in(self, value):
        if value > settings.NOTIFIER_PREFERENCES_LINK_MAX_TTL_SECONDS:
            raise serializers.ValidationError(
                f"At most {settings.NOTIFIER_PREFERENCES_LINK_MAX_TTL_SECONDS} seconds.")
        return value

    def to_internal_value(self, data):
        unknown = sorted(set(data) - {"expires_in"}) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class PreferencesLinkAnswer(serializers.Serializer):
    url = serializers.URLField(help_text="The user's hosted preference center (GET /preferences/<token>).")
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField()


class PreferencesLinkView(APIView):
    """A signed, expiring link to the user's hosted preference center, for an email, an SMS or the app's
    settings screen. A producer key with `tokens`, or the user's own recipient token."""

    permission_classes = [IsProducerOrSameRecipient]
    required_scopes = {"POST": SCOPE_TOKENS}

    @extend_schema(request=PreferencesLinkRequest, responses={
        201: PreferencesLinkAnswer,
        400: OpenApiResponse(ErrorSerializer, description="expires_in is not an integer from 60 to the maximum, "
                                                          "or the body has another field."),
    })
    def post(self, request, user_id):
        body = PreferencesLinkRequest(data=request.data)
        body.is_valid(raise_exception=True)
        ttl = body.validated_data.get("expires_in", settings.NOTIFIER_PREFERENCES_LINK_TTL_SECONDS)
        url, expires_at = preferences_link_issue(user_id, ttl)
        return Response({"url": url, "expires_at": expires_at.isoformat().replace("+00:00", "Z"), "expires_in": ttl},
                        status=201)
