"""The recipients a campaign's segment reaches (docs/campaigns/segments.md). A segment is one of

    {"user_ids": ["u_1", "u_2"]}     up to NOTIFIER_CAMPAIGN_MAX_INLINE_USER_IDS; stored as CampaignMember rows
    {"topic": "sports"}              the topic's subscribers (RecipientTopic)
    {"all": true}                    every recipient
    {"filter": {...}}                a small JSON language over recipient fields and attributes:

    {"all": [{"attr": "country", "in": ["US", "CA"]}, {"field": "last_seen_at", "gt": "2026-01-01"}]}

`segment_parse` checks a segment and answers its normalized form, or raises SegmentError naming the part
(`segment.filter.all[1].gt`); `segment_recipients` turns a normalized segment into a queryset. A filter
becomes Django Q objects over an allow-list of columns (FIELDS) and expressions over the keys of
Recipient.attributes: no SQL text is ever built from input, and every value is a bound parameter.

Each condition is true or false, never SQL's unknown: a recipient without the attribute (or with no
last_seen_at) fails `{"attr": "country", "eq": "US"}` and passes `{"not": {"attr": "country", "eq": "US"}}`,
so `not` is always the complement.

The fan-out reads a segment in chunks by recipient id: `segment_ids_after(c, cursor, 1000)` finds where
the next chunk ends and `segment_recipients(c, after_id=a, last_id=b)` reads it, each with the range in
the segment's own index, so a chunk costs the same at the end of a million-recipient topic as at its start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import reduce
from operator import and_, or_

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import BooleanField, F, Func, JSONField, Q, QuerySet, UUIDField, Value
from django.db.models.fields.json import (
    HasKey,
    KeyTransform,
    KeyTransformExact,
    KeyTransformGt,
    KeyTransformIn,
    KeyTransformLt,
    compile_json_path,
)
from django.utils.dateparse import parse_date, parse_datetime

from notifier.models import CampaignMember, Digest, Recipient, RecipientTopic
from notifier.validation import text_problem, validate_topic, validate_user_id

SEGMENT_KINDS = ("user_ids", "topic", "all", "filter")
OPERATORS = ("eq", "in", "gt", "lt", "exists")
GROUPS = ("all", "any", "not")

# Limits of a filter: it is stored on the campaign and translated into one query, so it stays small.
FILTER_MAX_DEPTH = 8  # groups (all / any / not) inside one another
FILTER_MAX_PARTS = 100  # groups and conditions together
FILTER_MAX_IN_VALUES = 1000  # values of one `in`
FILTER_MAX_STRING_CHARS = 1000  # a value compared with
# An attribute key: a letter or _ first (a key of digits alone would be read as an array index by
# Django's JSON lookups), then letters, digits and _ - . :
ATTRIBUTE_KEY_MAX_CHARS = 64
ATTRIBUTE_KEY_CHARACTERS = "letters, digits and _ - . : (a letter or _ first)"
# The largest integer compared with an attribute: exact in a float64 too (SQLite and JSON readers).
ATTRIBUTE_MAX_INTEGER = 2 ** 53


class SegmentError(ValueError):
    """A segment that cannot be taken in: `path` names the part (`segment.filter.all[1].gt`), `message`
    says what is wrong with it. The API answers it as a 400 with fields {path: [message]}."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # "string", "boolean", "datetime" or "choice"
    operators: tuple[str, ...]
    choices: tuple[str, ...] = ()


# The Recipient columns a filter may read, and the operators each takes. `exists` means a non-empty
# email or phone, and a last_seen_at that is set; the other columns are always set.
FIELDS = {
    "user_id": FieldSpec("string", ("eq", "in", "gt", "lt")),
    "email": FieldSpec("string", ("eq", "in", "exists")),
    "phone": FieldSpec("string", ("eq", "in", "exists")),
    "timezone": FieldSpec("string", ("eq", "in")),
    "language": FieldSpec("string", ("eq", "in")),
    "marketing_opt_in": FieldSpec("boolean", ("eq",)),
    "digest": FieldSpec("choice", ("eq", "in"), tuple(Digest.values)),
    "created_at": FieldSpec("datetime", ("gt", "lt")),
    "last_seen_at": FieldSpec("datetime", ("gt", "lt", "exists")),
}
BLANK_WHEN_ABSENT = {"email", "phone"}  # empty string, not NULL, when there is none

CONDITION_EXAMPLE = '{"attr": "country", "in": ["US", "CA"]} or {"field": "last_seen_at", "gt": "2026-01-01"}'


def segment_parse(raw, path: str = "segment") -> dict:
    """The normalized segment `raw` asks for (user ids deduplicated in order, dates in ISO 8601 UTC), or
    SegmentError naming the first bad part. Makes no query: unknown user ids are counted when the members
    are stored (segment_members_store)."""
    if not isinstance(raw, dict):
        raise SegmentError(path, 'Must be an object: {"user_ids": [...]}, {"topic": "..."}, {"all": true} '
                                 'or {"filter": {...}}.')
    for key in raw:
        if key not in SEGMENT_KINDS:
            raise SegmentError(f"{path}.{key}", "Unknown key; a segment is one of user_ids, topic, all or filter.")
    if len(raw) != 1:
        raise SegmentError(path, "Give exactly one of user_ids, topic, all or filter.")
    kind, value = next(iter(raw.items()))
    at = f"{path}.{kind}"
    if kind == "user_ids":
        return {"user_ids": _user_ids_parse(value, at)}
    if kind == "topic":
        return {"topic": _topic_parse(value, at)}
    if kind == "all":
        if value is not True:
            raise SegmentError(at, 'Must be true (every recipient); a filter goes in {"filter": {"all": [...]}}.')
        return {"all": True}
    return {"filter": _node_parse(value, at, depth=0, parts=[0])}


def _user_ids_parse(value, path: str) -> list[str]:
    limit = settings.NOTIFIER_CAMPAIGN_MAX_INLINE_USER_IDS
    if not isinstance(value, list) or not value:
        raise SegmentError(path, "Must be a non-empty list of user ids.")
    if len(value) > limit:
        raise SegmentError(path, f"At most {limit} user ids inline; got {len(value)}. "
                                 "A larger segment is a topic or a filter.")
    for index, user_id in enumerate(value):
        try:
            validate_user_id(user_id)
        except ValidationError as error:
            raise SegmentError(f"{path}[{index}]", error.messages[0]) from None
    return list(dict.fromkeys(value))


def _topic_parse(value, path: str) -> str:
    try:
        validate_topic(value)
    except ValidationError as error:
        raise SegmentError(path, error.messages[0]) from None
    return value


def _node_parse(node, path: str, depth: int, parts: list[int]) -> dict:
    """One part of a filter, normalized. `parts` counts the parts seen so far (a list, to share it)."""
    if not isinstance(node, dict):
        raise SegmentError(path, f'Must be an object: {{"all": [...]}}, {{"any": [...]}}, {{"not": {{...}}}}, '
                                 f"or a condition such as {CONDITION_EXAMPLE}.")
    parts[0] += 1
    if parts[0] > FILTER_MAX_PARTS:
        raise SegmentError(path, f"A filter has at most {FILTER_MAX_PARTS} parts (groups and conditions).")
    group = next((key for key in GROUPS if key in node), None)
    if group is not None:
        return _group_parse(node, group, path, depth, parts)
    if "attr" in node or "field" in node:
        return _condition_parse(node, path)
    if not node:
        raise SegmentError(path, f"Empty; give a group (all, any, not) or a condition such as {CONDITION_EXAMPLE}.")
    key = next(iter(node))
    raise SegmentError(f"{path}.{key}", 'Unknown key; a filter part is a group ("all", "any", "not") or a '
                                        'condition on an "attr" or a "field".')


def _group_parse(node: dict, group: str, path: str, depth: int, parts: list[int]) -> dict:
    for key in node:
        if key != group:
            raise SegmentError(f"{path}.{key}", f'Not allowed beside "{group}": a group is {{"{group}": ...}} alone.')
    at = f"{path}.{group}"
    if depth >= FILTER_MAX_DEPTH:
        raise SegmentError(at, f"Groups nest at most {FILTER_MAX_DEPTH} levels deep.")
    value = node[group]
    if group == "not":
        return {"not": _node_parse(value, at, depth + 1, parts)}
    if not isinstance(value, list) or not value:
        raise SegmentError(at, "Must be a non-empty list of conditions or groups.")
    if len(value) > FILTER_MAX_PARTS:
        raise SegmentError(at, f"A filter has at most {FILTER_MAX_PARTS} parts (groups and conditions).")
    return {group: [_node_parse(child, f"{at}[{index}]", depth + 1, parts) for index, child in enumerate(value)]}


def _condition_parse(node: dict, path: str) -> dict:
    if "attr" in node and "field" in node:
        raise SegmentError(path, 'Give "attr" or "field", not both.')
    subject = "attr" if "attr" in node else "field"
    operators = []
    for key in node:
        if key == subject:
            continue
        if key not in OPERATORS:
            raise SegmentError(f"{path}.{key}", f"Unknown operator; use one of {', '.join(OPERATORS)}.")
        operators.append(key)
    if not operators:
        raise SegmentError(path, f"Needs an operator ({', '.join(OPERATORS)}), e.g. {CONDITION_EXAMPLE}.")
    if len(operators) > 1:
        raise SegmentError(f"{path}.{operators[1]}",
                           'One operator per condition; combine conditions with {"all": [...]}.')
    operator = operators[0]
    at = f"{path}.{operator}"
    if subject == "attr":
        key = _attribute_key_parse(node["attr"], f"{path}.attr")
        return {"attr": key, operator: _attribute_value_parse(operator, node[operator], at)}
    name = node["field"]
    spec = FIELDS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise SegmentError(f"{path}.field", f"Unknown field; a filter reads {', '.join(FIELDS)} "
                                            '(and attributes, with "attr").')
    if operator not in spec.operators:
        raise SegmentError(at, f"{name} takes {', '.join(spec.operators)}" +
                           ("; it is always set." if operator == "exists" else "."))
    return {"field": name, operator: _field_value_parse(spec, name, operator, node[operator], at)}


def _attribute_key_parse(key, path: str) -> str:
    if (not isinstance(key, str) or not key or len(key) > ATTRIBUTE_KEY_MAX_CHARS
            or not (key[0].isascii() and (key[0].isalpha() or key[0] == "_"))
            or not all(c.isascii() and (c.isalnum() or c in "_-.:") for c in key)):
        raise SegmentError(path, f"An attribute key is 1 to {ATTRIBUTE_KEY_MAX_CHARS} characters: "
                                 f"{ATTRIBUTE_KEY_CHARACTERS}.")
    return key


def _string_check(value, path: str) -> str:
    if len(value) > FILTER_MAX_STRING_CHARS:
        raise SegmentError(path, f"At most {FILTER_MAX_STRING_CHARS} characters.")
    if problem := text_problem(value):
        raise SegmentError(path, problem)
    return value


def _scalar_parse(value, path: str, *, booleans: bool = True):
    """An attribute value compared with: a string, a number, or (unless `booleans` is false) a boolean."""
    if isinstance(value, bool):
        if booleans:
            return value
    elif isinstance(value, str):
        return _string_check(value, path)
    elif isinstance(value, int):
        if abs(value) > ATTRIBUTE_MAX_INTEGER:
            raise SegmentError(path, f"Numbers are at most {ATTRIBUTE_MAX_INTEGER} in size.")
        return value
    elif isinstance(value, float) and math.isfinite(value):
        return value
    kinds = "a string, a number or true/false" if booleans else "a string or a number"
    raise SegmentError(path, f"Must be {kinds}.")


def _list_parse(value, path: str, item) -> list:
    if not isinstance(value, list) or not value:
        raise SegmentError(path, "Must be a non-empty list of values.")
    if len(value) > FILTER_MAX_IN_VALUES:
        raise SegmentError(path, f"At most {FILTER_MAX_IN_VALUES} values; got {len(value)}.")
    parsed = [item(entry, f"{path}[{index}]") for index, entry in enumerate(value)]
    # Keyed by type too: 1, 1.0 and true are equal in Python and distinct in JSON.
    return list({(type(entry), entry): entry for entry in parsed}.values())


def _exists_parse(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise SegmentError(path, "Must be true or false.")
    return value


def _attribute_value_parse(operator: str, value, path: str):
    if operator == "exists":
        return _exists_parse(value, path)
    if operator == "in":
        return _list_parse(value, path, _scalar_parse)
    if operator in ("gt", "lt"):
        return _scalar_parse(value, path, booleans=False)
    if value is None:
        raise SegmentError(path, 'Must be a string, a number or true/false; for a missing attribute use '
                                 '{"attr": ..., "exists": false}.')
    return _scalar_parse(value, path)


def _field_value_parse(spec: FieldSpec, name: str, operator: str, value, path: str):
    if operator == "exists":
        return _exists_parse(value, path)
    if operator == "in":
        return _list_parse(value, path, lambda entry, at: _field_scalar_parse(spec, name, entry, at))
    return _field_scalar_parse(spec, name, value, path)


def _field_scalar_parse(spec: FieldSpec, name: str, value, path: str):
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise SegmentError(path, f"{name} is true or false.")
        return value
    if spec.kind == "datetime":
        return _datetime_parse(value, path).isoformat()
    if not isinstance(value, str):
        raise SegmentError(path, f"{name} is a string.")
    if spec.kind == "choice" and value not in spec.choices:
        raise SegmentError(path, f"{name} is one of {', '.join(spec.choices)}.")
    return _string_check(value, path)


def _datetime_parse(value, path: str) -> datetime:
    """An ISO 8601 date (its midnight, UTC) or date and time (UTC when it has no offset), as a UTC datetime."""
    problem = 'An ISO 8601 date or date and time, e.g. "2026-01-01" or "2026-01-01T09:30:00Z".'
    if not isinstance(value, str) or len(value) > 40:
        raise SegmentError(path, problem)
    try:
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)) is not None:
            moment = datetime.combine(day, time(0), tzinfo=UTC)
    except ValueError:  # well formed but impossible (2026-02-30)
        moment = None
    if moment is None:
        raise SegmentError(path, problem)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ---- A normalized segment as a query ----


def segment_recipients(campaign, after_id: int | None = None, last_id: int | None = None) -> QuerySet:
    """The campaign's segment as a queryset of recipients (unordered; callers order by id).

    With `after_id` (and `last_id`), only its recipients with after_id < id (<= last_id), the range
    written where the segment's own index reads it: a chunk of a topic segment reads its slice of
    topic_recipients (topic, recipient), a user_ids segment its slice of campaign_member_once, instead of
    the topic from its start. PostgreSQL does not carry a range on recipient.id over to the joined
    topic rows, so `segment_recipients(c).filter(id__gt=a, id__lte=b)` is correct but reads the topic's
    index from the start for each chunk: the fan-out passes the range here."""
    segment = campaign.segment
    bounds = _id_bounds("id", after_id, last_id)
    if "user_ids" in segment:
        members = CampaignMember.objects.filter(campaign_id=campaign.id, **_id_bounds("recipient_id", after_id, last_id))
        return Recipient.objects.filter(id__in=members.values("recipient_id"), **bounds)
    if "topic" in segment:
        subscribers = RecipientTopic.objects.filter(topic=segment["topic"],
                                                    **_id_bounds("recipient_id", after_id, last_id))
        return Recipient.objects.filter(id__in=subscribers.values("recipient_id"), **bounds)
    if segment.get("all") is True:
        return Recipient.objects.filter(**bounds)
    if "filter" in segment:
        # Parsed again (a few hundred parts at most): a stored filter edited by hand into something
        # invalid raises SegmentError naming the part, not a KeyError from the translation.
        return Recipient.objects.filter(filter_q(segment_parse({"filter": segment["filter"]})["filter"]), **bounds)
    raise ValueError(f"campaign {campaign.id}: segment {sorted(segment)} is not one this version reads")


def segment_ids_after(campaign, after_id: int, limit: int) -> list[int]:
    """The ids of the segment's next `limit` recipients after `after_id`, in id order: where the fan-out's
    next chunk ends. Reads the segment's own index in order (topic_recipients, campaign_member_once, or
    the recipient primary key), `limit` entries of it for a topic or a member list."""
    segment = campaign.segment
    if "user_ids" in segment:
        ids = CampaignMember.objects.filter(campaign_id=campaign.id, recipient_id__gt=after_id)
    elif "topic" in segment:
        ids = RecipientTopic.objects.filter(topic=segment["topic"], recipient_id__gt=after_id)
    else:
        ids = None
    if ids is not None:
        return list(ids.order_by("recipient_id").values_list("recipient_id", flat=True)[:limit])
    return list(segment_recipients(campaign, after_id).order_by("id").values_list("id", flat=True)[:limit])


def _id_bounds(name: str, after_id: int | None, last_id: int | None) -> dict:
    bounds = {}
    if after_id is not None:
        bounds[f"{name}__gt"] = after_id
    if last_id is not None:
        bounds[f"{name}__lte"] = last_id
    return bounds


def segment_count(campaign) -> int:
    """How many recipients the segment reaches now (Campaign.estimated_recipients). For a user_ids
    segment, its stored members (segment_members_store first)."""
    segment = campaign.segment
    if "user_ids" in segment:
        return CampaignMember.objects.filter(campaign_id=campaign.id).count()
    if "topic" in segment:  # an index-only count on topic_recipients
        return RecipientTopic.objects.filter(topic=segment["topic"]).count()
    return segment_recipients(campaign).count()


def filter_q(node: dict) -> Q:
    """A normalized filter (segment_parse's) as a Q object."""
    if "all" in node:
        return reduce(and_, (filter_q(child) for child in node["all"]))
    if "any" in node:
        return reduce(or_, (filter_q(child) for child in node["any"]))
    if "not" in node:
        return ~filter_q(node["not"])
    name = next(key for key in node if key in OPERATORS)
    if "attr" in node:
        return _attribute_q(node["attr"], name, node[name])
    return _field_q(node["field"], name, node[name])


def _field_q(name: str, operator: str, value) -> Q:
    # `name` is a key of FIELDS (segment_parse allows no other), so it spells a column, never input.
    spec = FIELDS[name]
    if operator == "exists":
        present = ~Q(**{name: ""}) if name in BLANK_WHEN_ABSENT else Q(**{f"{name}__isnull": False})
        return present if value else ~present
    if spec.kind == "datetime":  # stored as ISO 8601 in the normalized segment
        value = datetime.fromisoformat(value)
    lookup = {"eq": "exact", "in": "in", "gt": "gt", "lt": "lt"}[operator]
    return Q(**{f"{name}__{lookup}": value})


def _attribute_q(key: str, operator: str, value) -> Q:
    """A condition on one key of Recipient.attributes. Built from lookup expressions, not keyword
    lookups (attributes__<key>), so that a key such as "in", "contains" or "a__b" is a key, not a lookup.
    Each is true or false for every recipient: a missing key is false (HasKey first), never unknown."""
    if operator == "exists":
        return Q(_has_key(key)) if value else ~Q(_has_key(key))
    attribute = KeyTransform(key, "attributes")
    if operator == "in":
        return Q(_has_key(key)) & Q(KeyTransformIn(attribute, value))
    # A lookup built by hand is not given the JSON field to prepare its value with: say it is JSON.
    json_value = Value(value, output_field=JSONField())
    if operator == "eq":
        return Q(_has_key(key)) & Q(KeyTransformExact(attribute, json_value))
    # gt / lt: a number compares with numbers and a string with strings; any other value is false.
    kind = "string" if isinstance(value, str) else "number"
    compare = KeyTransformGt if operator == "gt" else KeyTransformLt
    return Q(JSONKeyIs(key, kind)) & Q(compare(attribute, json_value))


def _has_key(key: str) -> HasKey:
    return HasKey(F("attributes"), key)


class JSONKeyIs(Func):
    """True when Recipient.attributes holds a `kind` ("number" or "string") at `key`; false when it holds
    another type or lacks the key (never NULL). PostgreSQL: jsonb_typeof; SQLite: json_type, whose
    numbers are "integer" or "real" and whose strings are "text". The key and path are bound parameters."""

    output_field = BooleanField()
    SQLITE_TYPES = {"number": ("integer", "real"), "string": ("text",)}

    def __init__(self, key: str, kind: str):
        super().__init__(KeyTransform(key, "attributes"))
        self.kind = kind

    def as_postgresql(self, compiler, connection):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(jsonb_typeof({sql}) = %s, false)", (*params, self.kind)

    def as_sqlite(self, compiler, connection):
        column, params, keys = self.source_expressions[0].preprocess_lhs(compiler, connection)
        types = self.SQLITE_TYPES[self.kind]
        placeholders = ", ".join(["%s"] * len(types))
        return (f"COALESCE(JSON_TYPE({column}, %s) IN ({placeholders}), 0)",
                (*params, compile_json_path(keys), *types))

    def as_sql(self, compiler, connection, **extra_context):
        raise NotImplementedError(f"segment filters on attributes support PostgreSQL and SQLite, not {connection.vendor}")


# ---- Members of a user_ids segment ----


def segment_members_store(campaign, user_ids) -> int:
    """Store the campaign's members (CampaignMember rows) for these user ids, set-based: one INSERT …
    SELECT per batch of ids, the SELECT matching them against Recipient.user_id, so that ids unknown as
    recipients are left out (none is created). Returns how many of the ids are members, counting those a
    previous call stored (so a retried create answers the same); unknown = len(set(user_ids)) - that.

    Batched (MEMBERS_BATCH_SIZE) so that no statement binds more parameters than the database takes:
    psycopg's limit is 65,535, SQLite's the build's variable limit (Django's max_query_params: 999). Runs
    in the caller's transaction (a savepoint of its own)."""
    ids = list(dict.fromkeys(user_ids))
    table = CampaignMember._meta.db_table
    columns = ", ".join(connection.ops.quote_name(CampaignMember._meta.get_field(name).column)
                        for name in ("campaign", "recipient"))
    size = id_batch_size()
    with transaction.atomic():
        for start in range(0, len(ids), size):
            batch = ids[start:start + size]
            # The SELECT is Django's (the campaign id adapted for the backend, the ids bound); only the
            # INSERT around it is spelled here, from the model's own table and column names.
            select = (Recipient.objects.filter(user_id__in=batch)
                      .annotate(member_campaign=Value(campaign.id, output_field=UUIDField()))
                      .values_list("member_campaign", "id"))
            sql, params = select.query.sql_with_params()
            with connection.cursor() as cursor:
                # ON CONFLICT DO NOTHING: PostgreSQL, and SQLite since 3.24 (an INSERT … SELECT needs
                # its WHERE, which this one has, for SQLite to read the clause).
                cursor.execute(f"INSERT INTO {connection.ops.quote_name(table)} ({columns}) {sql} "
                               "ON CONFLICT DO NOTHING", params)
    return CampaignMember.objects.filter(campaign_id=campaign.id).count()


# User ids per statement: under SQLite's variable limit (Django's max_query_params, 999, less the
# campaign id) and small enough that PostgreSQL looks each batch up in the user_id index (with 10,000 ids
# of 1,000,000 recipients it chose a parallel sequential scan of the table for every batch instead).
MEMBERS_BATCH_SIZE = 1000


def id_batch_size() -> int:
    """How many ids one IN list binds here (segment_members_store, the dry run of a user_ids segment)."""
    limit = connection.features.max_query_params
    return min(limit - 1, MEMBERS_BATCH_SIZE) if limit else MEMBERS_BATCH_SIZE


def user_ids_recipient_ids(user_ids) -> list[int]:
    """The recipient ids of those of these user ids that are recipients, in batches (as
    segment_members_store): for the dry run of a user_ids segment, whose members are not stored."""
    ids, size = list(dict.fromkeys(user_ids)), id_batch_size()
    found = []
    for start in range(0, len(ids), size):
        found.extend(Recipient.objects.filter(user_id__in=ids[start:start + size])
                     .values_list("id", flat=True))
    return sorted(found)

