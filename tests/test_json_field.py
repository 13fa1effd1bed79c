"""notifier.models.fields.JSONField: orjson in and out, and json's behaviour where orjson would differ."""
import datetime

import pytest

from notifier.models import Recipient
from notifier.models.fields import json_text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value", [
    {"name": "Zoë", "emoji": "🚀", "nested": {"list": [1, 2.5, None, True, ""], "empty": {}}},
    {"line": "a\nb\t\"c\"\\ \u2028 \x7f", "html": "<a href='x'>&amp;</a>"},
    {"big": 2 ** 70, "negative": -(2 ** 65)},  # beyond orjson's 64 bits: json writes and reads them
    [],
    "a string",
])
def test_a_json_column_reads_back_what_was_written(value):
    Recipient.objects.create(user_id="u_json", attributes=value)

    assert Recipient.objects.get(user_id="u_json").attributes == value


def test_a_key_that_is_not_a_string_is_written_as_json_writes_it():
    Recipient.objects.create(user_id="u_json", attributes={1: "one", None: "none"})

    assert Recipient.objects.get(user_id="u_json").attributes == {"1": "one", "null": "none"}


def test_what_json_refuses_is_still_refused():
    with pytest.raises(TypeError):
        json_text({"at": datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)})
