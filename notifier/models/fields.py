"""Model fields of our own."""
from __future__ import annotations

import json

import orjson
from django.db import models
from psycopg.types.json import Jsonb


class JSONField(models.JSONField):
    """Django's JSONField, parsed and written with orjson: a campaign's worker turns about ten JSON columns
    into Python and back for every delivery it claims (the content, the notification's data, the
    recipient's preferences), and the standard library's json was a tenth of the deliver step's time there
    (tests/campaigns/profile_campaign.py). orjson is five to ten times faster at both.

    The stored JSON is the same. Where orjson refuses a value that json takes (an integer beyond 64 bits,
    a key that is not a string) the field falls back to json, so nothing that was accepted is refused now;
    a custom encoder or decoder keeps Django's own path."""

    def from_db_value(self, value, expression, connection):
        if not isinstance(value, str) or self.decoder is not None:
            return super().from_db_value(value, expression, connection)
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:  # beyond orjson's integers, or not JSON at all (Django returns it as is)
            return super().from_db_value(value, expression, connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if self.encoder is not None or connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return Jsonb(value, dumps=json_text)


# What json.dumps refuses (a datetime, a dataclass) goes to the fallback, which refuses it as before.
_AS_JSON_DOES = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value) -> str:
    """`value` as JSON text, by orjson, or by json for what orjson does not take."""
    try:
        return orjson.dumps(value, option=_AS_JSON_DOES).decode()
    except TypeError:  # orjson.JSONEncodeError: a key that is not a string, an integer beyond 64 bits
        return json.dumps(value)
