"""segment_parse: what a campaign's segment may say, its normalized form, and an error that names the bad
part by its path (`segment.filter.all[1].gt`), as a 400 does. No database: parsing makes no query."""
import pytest
from django.test import override_settings

from notifier.campaigns.segments import (
    FILTER_MAX_DEPTH,
    FILTER_MAX_IN_VALUES,
    FILTER_MAX_PARTS,
    SegmentError,
    segment_parse,
    segment_recipients,
)
from notifier.models import Campaign


def error_of(raw, path="segment") -> tuple[str, str]:
    with pytest.raises(SegmentError) as caught:
        segment_parse(raw, path)
    return caught.value.path, caught.value.message


class TestKinds:
    def test_user_ids_are_deduplicated_in_order(self):
        assert segment_parse({"user_ids": ["u_2", "u_1", "u_2"]}) == {"user_ids": ["u_2", "u_1"]}

    def test_a_topic_everyone_and_a_filter_are_taken(self):
        assert segment_parse({"topic": "sports"}) == {"topic": "sports"}
        assert segment_parse({"all": True}) == {"all": True}
        assert segment_parse({"filter": {"attr": "country", "eq": "US"}}) == {"filter": {"attr": "country", "eq": "US"}}

    @pytest.mark.parametrize("raw, path, message", [
        ([], "segment", "Must be an object"),
        ({}, "segment", "Give exactly one of user_ids, topic, all or filter."),
        ({"topic": "a", "all": True}, "segment", "Give exactly one of user_ids, topic, all or filter."),
        ({"users": ["u_1"]}, "segment.users", "Unknown key; a segment is one of user_ids, topic, all or filter."),
        ({"all": False}, "segment.all", "Must be true (every recipient)"),
        ({"all": [{"attr": "a", "eq": 1}]}, "segment.all", 'a filter goes in {"filter": {"all": [...]}}'),
        ({"user_ids": []}, "segment.user_ids", "Must be a non-empty list of user ids."),
        ({"user_ids": "u_1"}, "segment.user_ids", "Must be a non-empty list of user ids."),
        ({"user_ids": ["u_1", "bad id"]}, "segment.user_ids[1]", "A user id is 1 to 255 characters"),
        ({"user_ids": ["u_1", 7]}, "segment.user_ids[1]", "A user id is 1 to 255 characters"),
        ({"topic": "no spaces"}, "segment.topic", "A topic is 1 to 100 characters"),
        ({"topic": "a/b"}, "segment.topic", "A topic is 1 to 100 characters"),
        ({"topic": "x" * 101}, "segment.topic", "A topic is 1 to 100 characters"),
        ({"topic": ""}, "segment.topic", "A topic is 1 to 100 characters"),
    ])
    def test_a_bad_segment_names_its_part(self, raw, path, message):
        found_path, found_message = error_of(raw)

        assert found_path == path
        assert message in found_message

    @override_settings(NOTIFIER_CAMPAIGN_MAX_INLINE_USER_IDS=3)
    def test_more_user_ids_than_the_inline_limit_are_refused(self):
        path, message = error_of({"user_ids": ["a", "b", "c", "d"]})

        assert path == "segment.user_ids"
        assert message == "At most 3 user ids inline; got 4. A larger segment is a topic or a filter."

    def test_the_path_starts_where_the_caller_says(self):
        assert error_of({"topic": "a b"}, path="body.segment")[0] == "body.segment.topic"

    def test_the_error_reads_as_path_and_message(self):
        assert str(SegmentError("segment.topic", "Bad.")) == "segment.topic: Bad."


class TestFilters:
    def test_the_issues_example_is_taken_and_its_date_normalized_to_utc(self):
        raw = {"filter": {"all": [{"attr": "country", "in": ["US", "CA"]},
                                  {"field": "last_seen_at", "gt": "2026-01-01"}]}}

        assert segment_parse(raw) == {"filter": {"all": [
            {"attr": "country", "in": ["US", "CA"]},
            {"field": "last_seen_at", "gt": "2026-01-01T00:00:00+00:00"}]}}

    @pytest.mark.parametrize("value, normalized", [
        ("2026-01-01T09:30:00Z", "2026-01-01T09:30:00+00:00"),
        ("2026-01-01T09:30:00+05:00", "2026-01-01T04:30:00+00:00"),
        ("2026-01-01T09:30:00", "2026-01-01T09:30:00+00:00"),  # no offset: UTC, as everywhere in the API
        ("2026-01-01 09:30", "2026-01-01T09:30:00+00:00"),
    ])
    def test_datetimes_are_read_as_iso_8601(self, value, normalized):
        assert segment_parse({"filter": {"field": "created_at", "lt": value}}) == {
            "filter": {"field": "created_at", "lt": normalized}}

    def test_any_not_and_every_operator_are_taken(self):
        raw = {"filter": {"any": [
            {"not": {"attr": "plan", "eq": "free"}},
            {"attr": "age", "gt": 30}, {"attr": "score", "lt": 2.5}, {"attr": "beta", "exists": True},
            {"attr": "vip", "eq": True}, {"field": "marketing_opt_in", "eq": True},
            {"field": "digest", "in": ["daily", "hourly"]}, {"field": "email", "exists": False},
            {"field": "user_id", "gt": "m"}]}}

        assert segment_parse(raw) == raw

    def test_duplicate_values_of_in_are_dropped_but_1_and_true_stay_apart(self):
        raw = {"filter": {"attr": "tier", "in": [1, "1", True, 1, "1"]}}

        assert segment_parse(raw) == {"filter": {"attr": "tier", "in": [1, "1", True]}}

    @pytest.mark.parametrize("filter_, path, message", [
        ("country", "segment.filter", "Must be an object"),
        ({}, "segment.filter", "Empty; give a group"),
        ({"country": "US"}, "segment.filter.country", "Unknown key; a filter part is a group"),
        ({"all": []}, "segment.filter.all", "Must be a non-empty list of conditions or groups."),
        ({"any": {"attr": "a", "eq": 1}}, "segment.filter.any", "Must be a non-empty list"),
        ({"all": [{"attr": "a", "eq": 1}], "any": [{"attr": "b", "eq": 1}]}, "segment.filter.any",
         'Not allowed beside "all"'),
        ({"not": [{"attr": "a", "eq": 1}]}, "segment.filter.not", "Must be an object"),
        ({"all": [{"attr": "country", "in": ["US"]}, {"field": "last_seen_at", "gt": "yesterday"}]},
         "segment.filter.all[1].gt", "An ISO 8601 date or date and time"),
        ({"all": [{"attr": "a", "eq": 1}, {"any": [{"attr": "b", "eq": 1}, {"attr": "c", "between": [1, 2]}]}]},
         "segment.filter.all[1].any[1].between", "Unknown operator; use one of eq, in, gt, lt, exists."),
        ({"attr": "a"}, "segment.filter", "Needs an operator"),
        ({"attr": "a", "gt": 1, "lt": 5}, "segment.filter.lt", "One operator per condition"),
        ({"attr": "a", "field": "email", "eq": 1}, "segment.filter", 'Give "attr" or "field", not both.'),
        ({"attr": "", "eq": 1}, "segment.filter.attr", "An attribute key is 1 to 64 characters"),
        ({"attr": "42", "eq": 1}, "segment.filter.attr", "a letter or _ first"),
        ({"attr": "a b", "eq": 1}, "segment.filter.attr", "An attribute key"),
        ({"attr": "ключ", "eq": 1}, "segment.filter.attr", "An attribute key"),
        ({"attr": 7, "eq": 1}, "segment.filter.attr", "An attribute key"),
        ({"attr": "a", "eq": None}, "segment.filter.eq", '"exists": false'),
        ({"attr": "a", "eq": {"x": 1}}, "segment.filter.eq", "Must be a string, a number or true/false."),
        ({"attr": "a", "eq": [1]}, "segment.filter.eq", "Must be a string, a number or true/false."),
        ({"attr": "a", "gt": True}, "segment.filter.gt", "Must be a string or a number."),
        ({"attr": "a", "eq": 2 ** 60}, "segment.filter.eq", "Numbers are at most"),
        ({"attr": "a", "eq": "x\x00y"}, "segment.filter.eq", "Must not contain a NUL character."),
        ({"attr": "a", "eq": "x\x07"}, "segment.filter.eq", "control character U+0007"),
        ({"attr": "a", "eq": "x" * 1001}, "segment.filter.eq", "At most 1000 characters."),
        ({"attr": "a", "in": []}, "segment.filter.in", "Must be a non-empty list of values."),
        ({"attr": "a", "in": ["x", None]}, "segment.filter.in[1]", "Must be a string, a number or true/false."),
        ({"attr": "a", "exists": "yes"}, "segment.filter.exists", "Must be true or false."),
        ({"field": "password", "eq": "x"}, "segment.filter.field", "Unknown field; a filter reads user_id, email"),
        ({"field": "attributes", "eq": "x"}, "segment.filter.field", "Unknown field"),
        ({"field": "marketing_opt_in", "eq": "yes"}, "segment.filter.eq", "marketing_opt_in is true or false."),
        ({"field": "marketing_opt_in", "gt": True}, "segment.filter.gt", "marketing_opt_in takes eq."),
        ({"field": "user_id", "exists": True}, "segment.filter.exists", "user_id takes eq, in, gt, lt; it is always set."),
        ({"field": "created_at", "eq": "2026-01-01"}, "segment.filter.eq", "created_at takes gt, lt."),
        ({"field": "last_seen_at", "gt": "2026-02-30"}, "segment.filter.gt", "An ISO 8601 date"),
        ({"field": "last_seen_at", "gt": 20260101}, "segment.filter.gt", "An ISO 8601 date"),
        ({"field": "digest", "eq": "weekly"}, "segment.filter.eq", "digest is one of realtime, hourly, daily."),
        ({"field": "language", "in": ["en", 3]}, "segment.filter.in[1]", "language is a string."),
    ])
    def test_a_bad_filter_names_its_part(self, filter_, path, message):
        found_path, found_message = error_of({"filter": filter_})

        assert found_path == path
        assert message in found_message, found_message

    def test_groups_nest_only_so_deep(self):
        node = {"attr": "a", "eq": 1}
        for _ in range(FILTER_MAX_DEPTH):
            node = {"not": node}
        segment_parse({"filter": node})

        path, message = error_of({"filter": {"not": node}})

        assert path == "segment.filter" + ".not" * (FILTER_MAX_DEPTH + 1)
        assert message == f"Groups nest at most {FILTER_MAX_DEPTH} levels deep."

    def test_a_filter_has_only_so_many_parts(self):
        conditions = [{"attr": "a", "eq": index} for index in range(FILTER_MAX_PARTS)]

        path, message = error_of({"filter": {"any": conditions}})

        assert path == f"segment.filter.any[{FILTER_MAX_PARTS - 1}]"
        assert message == f"A filter has at most {FILTER_MAX_PARTS} parts (groups and conditions)."

    def test_an_in_list_has_only_so_many_values(self):
        path, message = error_of({"filter": {"attr": "a", "in": list(range(FILTER_MAX_IN_VALUES + 1))}})

        assert (path, message) == ("segment.filter.in", f"At most {FILTER_MAX_IN_VALUES} values; got 1001.")

    def test_a_normalized_segment_parses_to_itself(self):
        raw = {"filter": {"all": [{"field": "last_seen_at", "gt": "2026-01-01T10:00:00+02:00"},
                                  {"not": {"attr": "plan", "in": ["free", "free"]}}]}}
        normalized = segment_parse(raw)

        assert segment_parse(normalized) == normalized


def test_a_stored_filter_that_is_not_valid_raises_naming_the_part_not_a_key_error():
    with pytest.raises(SegmentError) as caught:
        segment_recipients(Campaign(segment={"filter": {"attr": "a", "between": [1, 2]}}))

    assert caught.value.path == "segment.filter.between"
