"""Cursor pagination for the API's lists: keyset pages over a unique ordering, so a page costs one query
however deep into the list it is, and rows added meanwhile are neither skipped nor repeated.

A response carries the page under its own name and `next_cursor` (null on the last page); the client
passes it back as `?cursor=` with an optional `?limit=` (PAGE_DEFAULT, at most PAGE_MAX). A cursor is the
last row's ordering values, base64url JSON; one this API did not return is a 400 naming `cursor`.
"""
from __future__ import annotations

import base64
import operator
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db.models import Q
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from notifier.validation import text_problem

PAGE_DEFAULT = 50
PAGE_MAX = 200
_BIGINT = 2 ** 63


class PageQuery(serializers.Serializer):
    cursor = serializers.CharField(required=False, help_text="`next_cursor` of the previous page.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX, default=PAGE_DEFAULT)


@dataclass(frozen=True)
class Keyset:
    """A total order of a queryset: order_by() names ("-" for descending) that together are unique, and the
    Python type of each (str, int, datetime or uuid.UUID; the last two travel as strings), to check the
    values a cursor brings before they reach a query."""

    fields: tuple[str, ...]
    types: tuple[type, ...]

    def page(self, queryset, cursor: str | None, limit: int) -> tuple[list, str | None]:
        """One page of `queryset` after `cursor`, and the cursor of the next page (None on the last)."""
        if cursor:
            queryset = queryset.filter(self._after(self._decode(cursor)))
        rows = list(queryset.order_by(*self.fields)[: limit + 1])
        next_cursor = self._encode(rows[limit - 1]) if len(rows) > limit else None
        return rows[:limit], next_cursor

    def _after(self, values: list) -> Q:
        # (a, b, c) after (x, y, z): a > x, or a = x and b > y, or a = x and b = y and c > z ("<" for a
        # descending field).
        after = Q()
        for index, field in enumerate(self.fields):
            name = field.lstrip("-")
            equal = {previous.lstrip("-"): value for previous, value in zip(self.fields[:index], values)}
            after |= Q(**equal, **{f"{name}__{'lt' if field.startswith('-') else 'gt'}": values[index]})
        return after

    def _encode(self, row) -> str:
        values = [operator.attrgetter(field.lstrip("-").replace("__", "."))(row) for field in self.fields]
        return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")

    def _decode(self, cursor: str) -> list:
        try:
            values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except ValueError:  # not base64, or not JSON (orjson.JSONDecodeError is a ValueError)
            values = None
        if not (isinstance(values, list) and len(values) == len(self.fields)
                and all(_fits(value, kind) for value, kind in zip(values, self.types))):
            raise serializers.ValidationError({"cursor": ["Not a cursor this API returned."]})
        return values


def _fits(value, kind: type) -> bool:
    if kind is int:
        return type(value) is int and -_BIGINT <= value < _BIGINT
    if not isinstance(value, str) or text_problem(value) is not None:
        return False
    try:
        if kind is datetime:  # with its offset, as the page encoded it: a naive one would be read as local
            parsed = parse_datetime(value)
            return parsed is not None and parsed.tzinfo is not None
        if kind is uuid.UUID:
            uuid.UUID(value)
    except ValueError:  # well-formed but impossible ("2026-13-40T…"), or not a UUID
        return False
    return True
