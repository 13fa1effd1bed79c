"""What notifier accepts as input, defined once and applied where input enters, so that no field needs a
check of its own and a field added later is covered the day it is added:

- every JSON body (notifier/api/renderers.py, ORJSONParser) goes through `json_problem`: at most
  MAX_JSON_DEPTH levels deep, and no key or string with a control character;
- every query parameter and path segment of the API (notifier/api/middleware.py) goes through
  `text_problem`, and a `user_id` path segment through `validate_user_id`;
- a user id, wherever it enters (POST notifications, PUT users, every /users/{user_id}/… path, the admin),
  is checked by `validate_user_id` against USER_ID, and a topic (the topics API, PUT users, a campaign's
  segment, the admin) by `validate_topic` against TOPIC;
- every admin form's text and JSON fields (notifier/admin.py, CheckedInputForm) go through `input_problem`,
  which is the two checks above.

Why: PostgreSQL refuses NUL in text and jsonb (a 500 at the INSERT, or at a filter of a read), and Python
code that walks JSON recursively (serializers, orjson's encoder, the request fingerprint) fails on documents
nested a few hundred levels deep. Refused input is a 400 naming the field by its path (`data.order_id`,
`recipients[0].user_id`, `cursor`).
"""
from __future__ import annotations

import re

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError

# JSON bodies nest at most this deep (the body itself is level 1, so `data` may nest 30 levels more).
MAX_JSON_DEPTH = 32

# Control characters other than tab, newline and carriage return (which template texts and data use).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# A user id is a path segment of /api/v1/users/{user_id}/…: only characters that need no escaping there
# (and no "/", which would split the path). ASCII letters and digits cover UUIDs and database ids; the
# punctuation covers e-mail addresses (a.b+c@example.com), URNs (user:42) and identity providers' ids
# (auth0|5f7c…, google-oauth2|1234).
USER_ID_MAX_LENGTH = 255
USER_ID_CHARACTERS = "letters A-Z and a-z, digits, and _ - . : @ + |"
# Also the OpenAPI schema's pattern for user ids (notifier/api/schema.py), so it is written as ECMA-262 too.
USER_ID_PATTERN = rf"^[A-Za-z0-9_.:@+|-]{{1,{USER_ID_MAX_LENGTH}}}$"
USER_ID = re.compile(USER_ID_PATTERN)

USER_ID_PROBLEM = (f"A user id is 1 to {USER_ID_MAX_LENGTH} characters: {USER_ID_CHARACTERS} "
                   f"(no '/', spaces or control characters).")


def validate_user_id(value) -> None:
    """Raises ValidationError unless `value` is a user id (USER_ID). A plain function, so that forms,
    serializers and the model field (and its migration) all name this one definition."""
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise ValidationError(USER_ID_PROBLEM, code="invalid")


# A topic ("sports", "team:42", "eu.news-weekly") is a path segment of /api/v1/users/{user_id}/topics/{topic}
# and a campaign's {"topic": ...} segment: the same alphabet as user ids without @ + | (which a topic name
# needs no more than a URL does), at most RecipientTopic.topic's length.
TOPIC_MAX_LENGTH = 100
TOPIC_CHARACTERS = "letters A-Z and a-z, digits, and _ - . :"
TOPIC_PATTERN = rf"^[A-Za-z0-9_.:-]{{1,{TOPIC_MAX_LENGTH}}}$"
TOPIC = re.compile(TOPIC_PATTERN)

TOPIC_PROBLEM = f"A topic is 1 to {TOPIC_MAX_LENGTH} characters: {TOPIC_CHARACTERS} (no '/' or spaces)."


def validate_topic(value) -> None:
    """Raises ValidationError unless `value` is a topic name (TOPIC): for the topics API, the admin, the
    model field and campaign segments alike."""
    if not isinstance(value, str) or not TOPIC.fullmatch(value):
        raise ValidationError(TOPIC_PROBLEM, code="invalid")


def text_problem(value: str) -> str | None:
    """Why a string cannot be taken in, or None."""
    found = _CONTROL_CHARACTER.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "Must not contain a NUL character."
    return f"Must not contain the control character U+{ord(found.group()):04X}."


def json_problem(document, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """The first place in a parsed JSON document that cannot be taken in, as (path, why), or None: a key or
    string that text_problem refuses, or an object or array nested more than `max_depth` levels deep. The
    path names the field as a 400 does: `data.items[2].name`; "" is the document itself.

    Iterative, so a document nested deeper than Python's recursion limit is walked like any other; the path
    is only spelled out for the field that is refused."""
    stack = [(document, 1, None)]  # (value, its depth, (its key, its parent's link) or None for the root)
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, str):
            if problem := text_problem(value):
                return _path(link), problem
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                return _path(link), f"Nested more than {max_depth} levels deep."
            if isinstance(value, dict):
                for key, item in value.items():
                    if problem := text_problem(key):
                        return _path((key, link)), problem
                    stack.append((item, depth + 1, (key, link)))
            else:
                stack.extend((item, depth + 1, (index, link)) for index, item in enumerate(value))
    return None


def _path(link) -> str:
    parts = []
    while link is not None:
        key, link = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    path = "".join(reversed(parts))
    return path[1:] if path.startswith(".") else path


def input_problem(value) -> str | None:
    """text_problem for a string, json_problem for a parsed JSON document (its path first), else None: for
    inputs that arrive outside the API's parser, such as admin forms."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, (dict, list)) and (found := json_problem(value)):
        path, problem = found
        return f"{path}: {problem}" if path else problem
    return None


def data_size_problem(data: dict) -> str | None:
    """A notification's data is copied into each of its rows (notification, inbox item, sandbox message,
    stream event): it is bounded on its own (NOTIFIER_MAX_DATA_BYTES), below the request's limit."""
    size = len(orjson.dumps(data))
    if size > settings.NOTIFIER_MAX_DATA_BYTES:
        return f"At most {settings.NOTIFIER_MAX_DATA_BYTES} bytes of JSON; this is {size}."
    return None
