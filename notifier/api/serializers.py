"""Input and output shapes of the API. Input serializers validate and name each bad field; they run no
queries beyond the notification type lookup, so the accept path stays lean."""
from __future__ import annotations

import re
import zoneinfo
from functools import cache

import orjson
from django.conf import settings
from django.core.validators import validate_email
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import SkipField
from rest_framework.settings import api_settings

from notifier.api.pagination import PageQuery
from notifier.channels.email import email_suppression_of
from notifier.models import (
    Channel, Delivery, DeliveryEvent, Device, Notification, NotificationType, Platform, Priority, Recipient, Template,
)
from notifier.models.choices import Category, NotificationStatus
from notifier.models.templates import CRITICAL_ONLY_TRANSACTIONAL
from notifier.pipeline.accept import CONTACT_FIELDS, AcceptRequest, RecipientEntry
from notifier.pipeline.render import VARIABLE_TYPES, template_problems, variable_errors
from notifier.process_cache import ProcessCache
from notifier.services import MAX_TOPICS_PER_USER
from notifier.validation import (
    TOPIC_MAX_LENGTH,
    TOPIC_PATTERN,
    USER_ID_MAX_LENGTH,
    USER_ID_PATTERN,
    data_size_problem,
    validate_topic,
    validate_user_id,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# A BCP 47 tag as the language columns hold it: at most 16 characters (Recipient.language and the others).
LANGUAGE = re.compile(r"^(?=.{2,16}$)[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def contact_errors(values: dict) -> dict[str, str]:
    """Errors in inline contact fields, by field name."""
    errors = {}
    if values.get("email"):
        try:
            validate_email(values["email"])
        except DjangoValidationError:
            errors["email"] = "Enter a valid email address."
    if values.get("phone") and not E164.match(values["phone"]):
        errors["phone"] = "Enter the number in E.164 form, e.g. +14155550100."
    if "timezone" in values and values["timezone"] not in _known_timezones():
        errors["timezone"] = f"'{values['timezone']}' is not an IANA time zone (e.g. Europe/Berlin)."
    if "language" in values and not LANGUAGE.match(str(values["language"])):
        errors["language"] = f"'{values['language']}' is not a language tag (e.g. en, pt-BR)."
    return errors


def channels_named_once(channels: list) -> None:
    """The validator of a list of channels that must not repeat one (an escalation's, a campaign's)."""
    if len(set(channels)) != len(channels):
        raise serializers.ValidationError("Name each channel once.")


def fields_validate(serializer: serializers.Serializer, data: dict) -> tuple[dict, dict]:
    """Run each writable field of `serializer` (and its validate_<field> method) on `data`: the valid
    values and the errors, by field name. Unlike DRF's to_internal_value, it hands back the valid values
    when some field is bad, so checks across fields can still name every bad field at once."""
    attrs: dict = {}
    errors: dict = {}
    for field in serializer._writable_fields:
        validate_method = getattr(serializer, "validate_" + field.field_name, None)
        try:
            value = field.run_validation(field.get_value(data))
            if validate_method is not None:
                value = validate_method(value)
        except serializers.ValidationError as error:
            errors[field.field_name] = error.detail
        except DjangoValidationError as error:
            errors[field.field_name] = list(error.messages)
        except SkipField:
            pass
        else:
            attrs[field.field_name] = value
    return attrs, errors


# An edited type reaches the accept path of every process within NOTIFIER_PROCESS_CACHE_SECONDS.
notification_types_by_key = ProcessCache()


def _forget_notification_types(sender, **kwargs):
    notification_types_by_key.clear()


post_save.connect(_forget_notification_types, sender=NotificationType, dispatch_uid="notifier.forget_types.save")
post_delete.connect(_forget_notification_types, sender=NotificationType, dispatch_uid="notifier.forget_types.delete")


@extend_schema_field(OpenApiTypes.STR)
class NotificationTypeKeyField(serializers.Field):
    """A notification type by its key, read from the process cache."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data:
            raise serializers.ValidationError("Must be the key of a notification type, e.g. order_shipped.")
        found = notification_types_by_key.get(data, lambda: NotificationType.objects.filter(key=data).first())
        if found is None:
            raise serializers.ValidationError(f"Unknown notification type '{data}'.")
        return found

    def to_representation(self, value):
        return value.key


@extend_schema_field({"type": "string", "pattern": USER_ID_PATTERN, "maxLength": USER_ID_MAX_LENGTH})
class UserIdField(serializers.CharField):
    """A user id (notifier.validation.USER_ID)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=USER_ID_MAX_LENGTH, validators=[validate_user_id], **kwargs)


@extend_schema_field({"type": "string", "pattern": TOPIC_PATTERN, "maxLength": TOPIC_MAX_LENGTH})
class TopicField(serializers.CharField):
    """A topic name (notifier.validation.TOPIC)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=TOPIC_MAX_LENGTH, validators=[validate_topic], **kwargs)


class TopicNamesField(serializers.ListField):
    """`topics` of a user: written as the list that replaces them, read as their names in order."""

    def __init__(self, **kwargs):
        super().__init__(child=TopicField(), max_length=MAX_TOPICS_PER_USER, **kwargs)

    def get_attribute(self, recipient):
        return list(recipient.topics.order_by("topic").values_list("topic", flat=True))

    def to_internal_value(self, data):
        topics = super().to_internal_value(data)
        repeated = {index: [f"Duplicate topic '{topic}': name each topic once."]
                    for index, topic in enumerate(topics) if topic in topics[:index]}
        if repeated:
            raise serializers.ValidationError(repeated)
        return topics


class RecipientEntrySchema(serializers.Serializer):
    """One entry of `recipients`, as the OpenAPI schema shows it (NotificationRequestSerializer checks the
    entries itself, so that a 400 names every bad one: `recipients[2].phone`)."""

    user_id = UserIdField()
    data = serializers.DictField(required=False, help_text="Merged over the request's data for this recipient.")
    channels = serializers.ListField(child=serializers.ChoiceField(Channel.choices), required=False)
    email = serializers.EmailField(required=False)
    phone = serializers.RegexField(E164.pattern, required=False, help_text="E.164, e.g. +14155550100.")
    timezone = serializers.CharField(required=False, help_text="An IANA time zone, e.g. Europe/Berlin.")
    language = serializers.RegexField(LANGUAGE.pattern, required=False)


@extend_schema_field(RecipientEntrySchema(many=True))
class RecipientsField(serializers.ListField):
    """`recipients`: a list of objects, shown in the schema entry by entry (RecipientEntrySchema)."""


def _channels_errors(channels) -> str | None:
    if not isinstance(channels, list) or not channels:
        return "Must be a non-empty list of channels."
    unknown = [c for c in channels if c not in Channel.values]
    if unknown:
        return f"Unknown channel {unknown[0]!r}; choose from {', '.join(Channel.values)}."
    return None


def _stored_data_problem(data: dict, entries: list) -> str | None:
    """The shared `data` is stored again for every recipient: what one request stores in all its
    notifications together is bounded by what it may send (NOTIFIER_MAX_REQUEST_BYTES), so 1,000 recipients
    cannot turn 64 KB of data into 64 MB of rows."""
    if not entries:
        return None
    shared = len(orjson.dumps(data)) if data else 0
    stored = shared * len(entries) + sum(len(orjson.dumps(entry.data)) for entry in entries if entry.data)
    limit = settings.NOTIFIER_MAX_REQUEST_BYTES
    if stored > limit:
        return (f"Stored once per recipient, this data comes to {stored} bytes for {len(entries)} recipients; "
                f"one request may store at most {limit} (NOTIFIER_MAX_REQUEST_BYTES). Send fewer recipients "
                "per request, or less data.")
    return None


def _fallback_channels_errors(channels) -> str | None:
    """A list of fallback channels (it may be empty: no fallback) has known channels, each once."""
    if not isinstance(channels, list):
        return "Must be a list of channels."
    unknown = [c for c in channels if c not in Channel.values]
    if unknown:
        return f"Unknown channel {unknown[0]!r}; choose from {', '.join(Channel.values)}."
    if len(set(channels)) != len(channels):
        return "Name each channel once."
    return None


ESCALATION_MAX_SECONDS = 7 * 24 * 3600


class EscalateSerializer(serializers.Serializer):
    """`escalate`: send on `channels` only if the in-app item is still unread `if_unread_after_seconds`
    after it reached the inbox. The notification's channels must include in_app."""

    channels = serializers.ListField(child=serializers.ChoiceField(Channel.choices), allow_empty=False,
                                     validators=[channels_named_once],
                                     help_text="Sent together, once, if the in-app item is unread then.")
    if_unread_after_seconds = serializers.IntegerField(min_value=1, max_value=ESCALATION_MAX_SECONDS,
                                                       help_text="1 second to 7 days.")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                'Must be an object: {"channels": ["email"], "if_unread_after_seconds": 600}.')
        attrs, errors = fields_validate(self, data)
        errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))} | errors
        seconds = data.get("if_unread_after_seconds")
        if "if_unread_after_seconds" in data and (type(seconds) is not int):  # not "600", 600.0 or true
            errors["if_unread_after_seconds"] = ["Must be an integer number of seconds."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class NotificationRequestSerializer(serializers.Serializer):
    """POST /api/v1/notifications. Either `user_id` or `recipients` (up to 1,000 entries)."""

    ALLOWED = {"type", "user_id", "recipients", "data", "channels", "priority", "idempotency_key",
               "schedule_at", "expires_at", "collapse_key", "fallback_channels", "escalate"}

    type = NotificationTypeKeyField()
    user_id = UserIdField(required=False)
    recipients = RecipientsField(child=serializers.DictField(), required=False, allow_empty=False)
    data = serializers.DictField(required=False, default=dict)
    channels = serializers.ListField(child=serializers.ChoiceField(Channel.choices), required=False,
                                     allow_empty=False)
    priority = serializers.ChoiceField(Priority.choices, required=False)
    idempotency_key = serializers.CharField(max_length=255, required=False)
    schedule_at = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="ISO 8601; without a UTC offset it is UTC. In the past (or absent): sent at once.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="ISO 8601; without a UTC offset it is UTC. Must be in the future and after schedule_at; what "
                  "has not been sent by then is not sent (status expired).")
    # Push: apns-collapse-id (Apple allows at most 64 bytes) and FCM's android.collapse_key.
    collapse_key = serializers.CharField(max_length=64, required=False, allow_blank=True)
    fallback_channels = serializers.ListField(
        child=serializers.ChoiceField(Channel.choices), required=False, allow_empty=True,
        help_text="Tried in order, once each, when the notification's channels reach no one (all failed, dead, "
                  "bounced or without a target); never one of its channels. Absent: the type's "
                  "default_fallback_channels; []: none.")
    escalate = EscalateSerializer(required=False)

    def validate_fallback_channels(self, channels):
        if problem := _fallback_channels_errors(channels):
            raise serializers.ValidationError(problem)
        return channels

    def validate_collapse_key(self, value):
        if len(value.encode()) > 64:
            raise serializers.ValidationError("At most 64 bytes (APNs apns-collapse-id).")
        return value

    def to_internal_value(self, data):
        """Validate every field, then every check across fields, recipients and variables that the valid
        fields allow, and raise once: a 400 names each bad field, not only the first kind found. (DRF's
        own to_internal_value stops before validate() when any field is bad.)"""
        if not isinstance(data, dict):
            raise serializers.ValidationError({"request": ["Must be a JSON object."]})
        attrs, field_errors = fields_validate(self, data)
        errors: dict = {name: ["Unknown field."] for name in sorted(set(data) - self.ALLOWED)} | field_errors
        self._cross_field_errors(data, attrs, errors)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def validate_data(self, data):
        if problem := data_size_problem(data):
            raise serializers.ValidationError(problem)
        return data

    def validate_recipients(self, entries):
        limit = settings.NOTIFIER_MAX_RECIPIENTS_PER_REQUEST
        if len(entries) > limit:
            raise serializers.ValidationError(f"At most {limit} recipients per request; got {len(entries)}.")
        return entries

    def _cross_field_errors(self, data: dict, attrs: dict, errors: dict) -> None:
        """Add to `errors` what is wrong across fields, using only the fields that were valid (a check that
        needs a bad field is skipped: its field already has an error). Sets attrs["entries"]."""
        def add(path, problem):
            if problem not in errors.setdefault(path, []):
                errors[path].append(problem)

        if ("user_id" in data) == ("recipients" in data):
            add("user_id", "Give either user_id or recipients, not both and not neither.")
            entries = []
        elif "user_id" in data:
            entries = [RecipientEntry(user_id=attrs["user_id"])] if "user_id" in attrs else []
        else:
            entries = self._recipient_entries(attrs["recipients"], errors) if "recipients" in attrs else []
        attrs["entries"] = entries

        if "data" not in errors and (problem := _stored_data_problem(attrs.get("data", {}), entries)):
            add("data", problem)

        notification_type = attrs.get("type")
        if notification_type is not None and "data" not in errors:
            for index, entry in enumerate(entries):
                for name, problem in variable_errors(notification_type, {**attrs.get("data", {}), **entry.data}).items():
                    add(f"recipients[{index}].data.{name}" if "recipients" in data else f"data.{name}", problem)

        if notification_type is not None and "channels" not in errors:
            self._channel_plan_errors(data, attrs, entries, notification_type, add)

        expires_at, schedule_at = attrs.get("expires_at"), attrs.get("schedule_at")
        if expires_at and expires_at <= timezone.now():
            add("expires_at", "Must be in the future.")
        elif expires_at and schedule_at and expires_at <= schedule_at:
            add("expires_at", "Must be after schedule_at.")

    @staticmethod
    def _channel_plan_errors(data, attrs, entries, notification_type, add) -> None:
        """A channel is used once per notification: as one of its channels, a fallback or an escalation;
        and an escalation needs in_app among its channels (it waits for the in-app item to be read)."""
        fallback = attrs.get("fallback_channels") or []
        escalate = attrs.get("escalate")
        if escalate:
            for channel in escalate["channels"]:
                if channel in fallback:
                    add("escalate.channels", f"{channel!r} is a fallback channel too; a channel is used once.")
        for index, entry in enumerate(entries):
            channels = entry.channels or attrs.get("channels") or notification_type.default_channels
            whose = f" (recipients[{index}])" if entry.channels else ""
            for channel in fallback:
                if channel in channels:
                    add("fallback_channels", f"{channel!r} is one of the notification's channels{whose}; "
                                             f"a fallback is another channel.")
            if not escalate:
                continue
            if "in_app" not in channels:
                add("escalate", f"Needs in_app among the notification's channels{whose}: an escalation waits "
                                f"for the in-app item to be read.")
            for channel in escalate["channels"]:
                if channel in channels:
                    add("escalate.channels", f"{channel!r} is one of the notification's channels{whose}; "
                                             f"an escalation is another channel.")

    def validate(self, attrs):
        notification_type = attrs["type"]
        entries = attrs["entries"]
        return AcceptRequest(
            type=notification_type,
            recipients=entries,
            data=attrs.get("data", {}),
            channels=attrs.get("channels", []),
            priority=attrs.get("priority") or notification_type.default_priority,
            schedule_at=attrs.get("schedule_at"),
            expires_at=attrs.get("expires_at"),
            idempotency_key=attrs.get("idempotency_key", ""),
            collapse_key=attrs.get("collapse_key", ""),
            fallback_channels=attrs.get("fallback_channels"),
            escalation=dict(attrs["escalate"]) if attrs.get("escalate") else None,
        )

    def _recipient_entries(self, recipients: list[dict], errors) -> list[RecipientEntry]:
        entries, seen = [], set()
        allowed = {"user_id", "data", "channels", *CONTACT_FIELDS}
        for index, raw in enumerate(recipients):
            path = f"recipients[{index}]"
            for name in sorted(set(raw) - allowed):
                errors[f"{path}.{name}"] = ["Unknown field."]
            user_id = raw.get("user_id")
            if not isinstance(user_id, str):
                errors[f"{path}.user_id"] = ["Required: a user id (a string)."]
                continue
            try:
                validate_user_id(user_id)
            except DjangoValidationError as error:
                errors[f"{path}.user_id"] = list(error.messages)
                continue
            if user_id in seen:
                errors[f"{path}.user_id"] = [f"Duplicate recipient '{user_id}' in this request."]
            seen.add(user_id)
            data = raw.get("data", {})
            if not isinstance(data, dict):
                errors[f"{path}.data"] = ["Must be an object."]
                data = {}
            elif problem := data_size_problem(data):
                errors[f"{path}.data"] = [problem]
            channels = raw.get("channels")
            if channels is not None and (problem := _channels_errors(channels)):
                errors[f"{path}.channels"] = [problem]
            contact = {name: raw[name] for name in CONTACT_FIELDS if name in raw}
            for name, problem in contact_errors(contact).items():
                errors[f"{path}.{name}"] = [problem]
            entries.append(RecipientEntry(user_id=user_id, data=data, channels=channels or [], contact=contact))
        return entries


@cache
def _notification_request_checker() -> NotificationRequestSerializer:
    return NotificationRequestSerializer()


def notification_request_validate(body) -> AcceptRequest:
    """POST /api/v1/notifications' body as an AcceptRequest, or a ValidationError naming every bad field,
    exactly as NotificationRequestSerializer(data=body).is_valid(raise_exception=True) raises it: the rules
    are the serializer's, which the OpenAPI schema documents. One serializer per process does it, since DRF
    deep-copies every declared field into each new serializer (nested ones and list children included);
    its bound fields keep nothing of a validation, so threads share them."""
    try:
        return _notification_request_checker().run_validation(body)
    except serializers.ValidationError as error:
        detail = error.detail
        if isinstance(detail, list) and len(detail) == 1 and getattr(detail[0], "code", None) == "null":
            # A JSON null body: what Serializer.errors says for it.
            detail = {api_settings.NON_FIELD_ERRORS_KEY: [ErrorDetail("No data provided", code="null")]}
        raise serializers.ValidationError(detail)


class AcceptedNotificationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user_id = serializers.CharField()
    status = serializers.ChoiceField(NotificationStatus.choices,
                                     help_text="accepted, or scheduled when schedule_at is in the future.")


class NotificationsAcceptedSerializer(serializers.Serializer):
    """The 202 answer of POST /api/v1/notifications (pipeline/accept.py builds it): one notification per
    recipient, in the request's order. A replay under the same idempotency key answers the same body."""

    notifications = AcceptedNotificationSerializer(many=True)


class EmailSuppressionSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="hard_bounce, invalid_address or admin")
    at = serializers.DateTimeField(source="created_at", help_text="When the provider reported it.")
    detail = serializers.CharField(help_text="The provider's words, e.g. the SMTP answer of the bounce.")


class RecipientSerializer(serializers.ModelSerializer):
    email_suppressed = serializers.SerializerMethodField(
        help_text="Set when SendGrid reported the email address dead (a hard bounce): no email is sent to it "
                  "until an operator clears it in admin. null otherwise.")

    topics = TopicNamesField(
        required=False,
        help_text=f"The topics the user follows (campaign segments {{\"topic\": ...}} reach them); a PUT with "
                  f"`topics` replaces them all, at most {MAX_TOPICS_PER_USER}. "
                  "/users/{user_id}/topics/{topic} adds or removes one.")

    class Meta:
        model = Recipient
        fields = ["user_id", "email", "phone", "timezone", "language", "attributes", "topics", "last_seen_at",
                  "sms_opted_out_at", "email_suppressed", "created_at", "updated_at"]
        read_only_fields = ["user_id", "sms_opted_out_at", "created_at", "updated_at"]
        extra_kwargs = {"last_seen_at": {
            "help_text": "When the user was last active (ISO 8601; without a UTC offset it is UTC). Registering or "
                         "refreshing a device sets it too; campaign filters read it."}}

    @extend_schema_field(EmailSuppressionSerializer(allow_null=True))
    def get_email_suppressed(self, recipient) -> dict | None:
        suppression = email_suppression_of(recipient)
        return EmailSuppressionSerializer(suppression).data if suppression is not None else None

    def validate_attributes(self, attributes):
        if not isinstance(attributes, dict):
            raise serializers.ValidationError("Must be an object.")
        return attributes

    def to_internal_value(self, data):
        """Validate every field, then the contact fields together (contact_errors), and raise once: a 400
        names each bad field. (DRF's own to_internal_value stops before validate() when any field is bad,
        so a bad email hid a bad phone number and time zone.)"""
        if not isinstance(data, dict):
            raise serializers.ValidationError({"request": ["Must be a JSON object."]})
        attrs, errors = fields_validate(self, data)
        contact = {name: attrs[name] for name in CONTACT_FIELDS if name in attrs}
        for name, problem in contact_errors(contact).items():
            errors[name] = [problem]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TopicSerializer(serializers.Serializer):
    """One of a user's topics."""

    topic = serializers.CharField()
    created_at = serializers.DateTimeField(help_text="When the user was subscribed.")


class TopicListSerializer(serializers.Serializer):
    """GET /api/v1/users/{user_id}/topics: every topic of the user, by name."""

    topics = TopicSerializer(many=True)


class DeviceSerializer(serializers.ModelSerializer):
    platform = serializers.ChoiceField(Platform.choices)
    token = serializers.CharField(max_length=512)

    class Meta:
        model = Device
        fields = ["platform", "token", "active", "last_seen_at", "deactivated_at", "deactivated_reason",
                  "created_at"]
        read_only_fields = ["active", "last_seen_at", "deactivated_at", "deactivated_reason", "created_at"]


class DeliveryEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryEvent
        fields = ["status", "previous_status", "applied", "source", "at", "payload"]
        extra_kwargs = {
            "applied": {"help_text": "False: a later report (a `delivered` after `clicked`) kept as history; the "
                                     "status did not change."},
            "payload": {"help_text": "The provider's event as received (SendGrid, Twilio), or the pixel's, the "
                                     "click's or the app's details."},
        }


class DeliverySerializer(serializers.ModelSerializer):
    """A delivery and its history: every status change, oldest first (notifier/pipeline/status.py)."""

    class Meta:
        model = Delivery
        fields = ["id", "channel", "target", "provider", "status", "status_reason", "release_at", "attempts",
                  "last_error", "provider_message_id", "template_version", "next_attempt_at", "created_at",
                  "sent_at", "delivered_at", "opened_at", "clicked_at", "failed_at", "replayed_from", "events"]
        extra_kwargs = {"replayed_from": {"help_text": "A replay: the id of the dead delivery it replays."}}

    events = DeliveryEventSerializer(many=True, read_only=True)

    template_version = serializers.IntegerField(source="template.version", default=None, read_only=True,
                                                allow_null=True, help_text="null until a template is rendered.")
    release_at = serializers.SerializerMethodField()

    def get_release_at(self, delivery) -> str | None:
        """When a held delivery will be released (it waits in next_attempt_at: pipeline/holds.py)."""
        return serializers.DateTimeField().to_representation(delivery.next_attempt_at) if delivery.status == "held" else None


class DeliveryPageSerializer(serializers.Serializer):
    deliveries = DeliverySerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class NotificationSerializer(serializers.ModelSerializer):
    """A notification with the first page of its deliveries (the view sets deliveries_page and
    deliveries_next_cursor: GET notifications/{id}/deliveries?cursor= pages the rest)."""

    type = serializers.CharField(source="type.key")
    user_id = serializers.CharField(source="recipient.user_id")
    deliveries = DeliverySerializer(many=True, source="deliveries_page")
    deliveries_next_cursor = serializers.CharField(allow_null=True)
    escalate = EscalateSerializer(source="escalation", allow_null=True)

    class Meta:
        model = Notification
        fields = ["id", "type", "user_id", "status", "priority", "channels", "fallback_channels", "escalate",
                  "escalate_at", "data", "decisions",
                  "idempotency_key", "collapse_key", "schedule_at", "expires_at", "created_at", "routed_at",
                  "completed_at", "cancelled_at",
                  "deliveries", "deliveries_next_cursor"]


class NotificationTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationType
        fields = ["key", "name", "category", "default_priority", "default_channels", "default_fallback_channels",
                  "default_language", "variables", "critical", "rate_limit_action", "digest_window_seconds",
                  "track_engagement", "created_at"]
        read_only_fields = ["created_at"]

    def validate_default_channels(self, channels):
        problem = _channels_errors(channels)
        if problem:
            raise serializers.ValidationError(problem)
        return channels

    def validate_default_fallback_channels(self, channels):
        if problem := _fallback_channels_errors(channels):
            raise serializers.ValidationError(problem)
        return channels

    def validate_default_language(self, language):
        if not LANGUAGE.match(language):
            raise serializers.ValidationError(f"'{language}' is not a language tag (e.g. en, pt-BR).")
        return language

    def validate(self, attrs):
        category = attrs.get("category", self.instance.category if self.instance else Category.TRANSACTIONAL)
        critical = attrs.get("critical", self.instance.critical if self.instance else False)
        if critical and category != Category.TRANSACTIONAL:
            raise serializers.ValidationError({"critical": [CRITICAL_ONLY_TRANSACTIONAL]})
        channels = attrs.get("default_channels", self.instance.default_channels if self.instance else [])
        fallback = attrs.get("default_fallback_channels",
                             self.instance.default_fallback_channels if self.instance else [])
        repeated = [channel for channel in fallback if channel in channels]
        if repeated:
            raise serializers.ValidationError({"default_fallback_channels": [
                f"{repeated[0]!r} is one of default_channels; a fallback is another channel."]})
        return attrs

    def validate_variables(self, variables):
        if not isinstance(variables, dict):
            raise serializers.ValidationError('Must be an object of variable name: {"required": true, ...}.')
        for name, spec in variables.items():
            if not isinstance(spec, dict) or set(spec) - {"required", "default", "type", "description", "example"}:
                raise serializers.ValidationError(
                    f"Variable '{name}': give an object with required, default, type, description or example."
                )
            if "type" in spec and spec["type"] not in VARIABLE_TYPES:
                raise serializers.ValidationError(
                    f"Variable '{name}': type must be one of {', '.join(VARIABLE_TYPES)}."
                )
        return variables


class NotificationTypePageSerializer(serializers.Serializer):
    notification_types = NotificationTypeSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class TemplateSerializer(serializers.ModelSerializer):
    type = serializers.SlugRelatedField(slug_field="key", queryset=NotificationType.objects.all())
    channel = serializers.ChoiceField(Channel.choices)

    class Meta:
        model = Template
        fields = ["id", "type", "channel", "language", "version", "active", "subject", "title", "body",
                  "html_body", "action_url", "badge", "sound", "created_at"]
        read_only_fields = ["id", "version", "active", "created_at"]
        # The model's default ("en") is for the admin form; a request says which language it publishes.
        extra_kwargs = {"language": {"required": True}}
        validators = []  # posting the same type × channel × language publishes a new version

    def validate_language(self, language):
        if not LANGUAGE.match(language):
            raise serializers.ValidationError(f"'{language}' is not a language tag (e.g. en, pt-BR).")
        return language

    def validate(self, attrs):
        errors = {name: [problem] for name, problem in
                  template_problems(attrs.get("type"), attrs.get("channel"), attrs).items()}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TemplateListQuery(PageQuery):
    type = serializers.CharField(required=False, help_text="Only this notification type's templates.")


class TemplatePageSerializer(serializers.Serializer):
    templates = TemplateSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class SandboxMessageQuery(serializers.Serializer):
    """GET /api/v1/sandbox/messages?user_id=&channel=&notification_id= (each optional)."""

    user_id = UserIdField(required=False)
    channel = serializers.ChoiceField(Channel.choices, required=False)
    notification_id = serializers.UUIDField(required=False)


class SandboxMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    user_id = serializers.CharField()
    to = serializers.CharField()
    notification_id = serializers.UUIDField()
    delivery_id = serializers.IntegerField()
    message = serializers.JSONField()
    created_at = serializers.DateTimeField()


class SandboxMessageListSerializer(serializers.Serializer):
    """GET /api/v1/sandbox/messages: an object, as every list the API answers, so fields can be added."""

    messages = SandboxMessageSerializer(many=True)
