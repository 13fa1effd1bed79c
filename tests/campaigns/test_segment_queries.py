"""A segment as a query: who each filter reaches, on PostgreSQL (the suite's database) and on SQLite (the
`make run` default: tests/campaigns/test_segments_on_sqlite.py runs this file there too)."""
import os
from datetime import UTC, datetime

import pytest
from django.db import connection

from notifier.campaigns.segments import (
    segment_count,
    segment_ids_after,
    segment_members_store,
    segment_parse,
    segment_recipients,
)
from notifier.models import Campaign, CampaignMember, NotificationType, Producer, Recipient, RecipientTopic

pytestmark = pytest.mark.django_db


def test_it_runs_on_the_database_it_was_given():
    # test_segments_on_sqlite.py sets SEGMENT_TESTS_VENDOR=sqlite; the suite itself runs on PostgreSQL.
    assert connection.vendor == os.environ.get("SEGMENT_TESTS_VENDOR", "postgresql")


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture
def people(db):
    """Four recipients whose fields and attributes each filter below picks among."""
    rows = {
        "ann": dict(email="ann@example.com", marketing_opt_in=True, digest="daily", last_seen_at=at("2026-02-01"),
                    attributes={"country": "US", "age": 35, "plan": "pro", "vip": True}),
        "bob": dict(email="", last_seen_at=None,
                    attributes={"country": "CA", "age": "35", "plan": "free", "vip": 1}),
        "cat": dict(email="cat@example.com", phone="+14155550100", last_seen_at=at("2025-12-01"), attributes={}),
        "dan": dict(email="dan@example.com", language="de", last_seen_at=at("2026-01-15"),
                    attributes={"country": "DE", "age": 20, "score": 2.5, "beta": None, "in": "x", "a__b": 1,
                                "contains": "y"}),
    }
    return {user_id: Recipient.objects.create(user_id=user_id, **fields) for user_id, fields in rows.items()}


def campaign_for(segment: dict) -> Campaign:
    """An unsaved campaign: segment_recipients reads only its segment (and id, for members)."""
    return Campaign(segment=segment_parse(segment), name="test")


def reached(segment: dict) -> list[str]:
    return sorted(segment_recipients(campaign_for(segment)).values_list("user_id", flat=True))


def reached_by(filter_: dict) -> list[str]:
    return reached({"filter": filter_})


class TestFilters:
    def test_the_issues_example_reaches_north_americans_seen_this_year(self, people):
        assert reached_by({"all": [{"attr": "country", "in": ["US", "CA"]},
                                   {"field": "last_seen_at", "gt": "2026-01-01"}]}) == ["ann"]

    def test_not_is_the_complement_even_for_a_missing_attribute(self, people):
        assert reached_by({"attr": "country", "eq": "US"}) == ["ann"]
        assert reached_by({"not": {"attr": "country", "eq": "US"}}) == ["bob", "cat", "dan"]
        assert reached_by({"not": {"attr": "country", "in": ["US", "CA"]}}) == ["cat", "dan"]
        assert reached_by({"not": {"attr": "age", "gt": 30}}) == ["bob", "cat", "dan"]

    def test_not_is_the_complement_for_a_field_that_may_be_null(self, people):
        assert reached_by({"field": "last_seen_at", "gt": "2026-01-01"}) == ["ann", "dan"]
        assert reached_by({"not": {"field": "last_seen_at", "gt": "2026-01-01"}}) == ["bob", "cat"]

    def test_gt_and_lt_compare_numbers_with_numbers_and_strings_with_strings(self, people):
        assert reached_by({"attr": "age", "gt": 30}) == ["ann"]  # bob's "35" is a string
        assert reached_by({"attr": "age", "lt": 30}) == ["dan"]
        assert reached_by({"attr": "age", "gt": "30"}) == ["bob"]
        assert reached_by({"attr": "score", "gt": 2}) == ["dan"]
        assert reached_by({"attr": "score", "lt": 2.6}) == ["dan"]
        assert reached_by({"attr": "plan", "gt": "g"}) == ["ann"]

    def test_eq_matches_the_json_type_too(self, people):
        assert reached_by({"attr": "vip", "eq": True}) == ["ann"]
        assert reached_by({"attr": "vip", "eq": 1}) == ["bob"]
        assert reached_by({"attr": "age", "eq": 35}) == ["ann"]
        assert reached_by({"attr": "age", "eq": "35"}) == ["bob"]
        assert reached_by({"attr": "age", "in": [35, 20]}) == ["ann", "dan"]
        assert reached_by({"attr": "score", "eq": 2.5}) == ["dan"]

    def test_exists_counts_a_key_whose_value_is_null(self, people):
        assert reached_by({"attr": "beta", "exists": True}) == ["dan"]
        assert reached_by({"attr": "beta", "exists": False}) == ["ann", "bob", "cat"]

    def test_a_key_that_spells_a_lookup_is_still_a_key(self, people):
        assert reached_by({"attr": "in", "eq": "x"}) == ["dan"]
        assert reached_by({"attr": "a__b", "eq": 1}) == ["dan"]
        assert reached_by({"attr": "contains", "in": ["y"]}) == ["dan"]

    def test_fields(self, people):
        assert reached_by({"field": "email", "exists": True}) == ["ann", "cat", "dan"]
        assert reached_by({"field": "email", "exists": False}) == ["bob"]
        assert reached_by({"field": "phone", "exists": True}) == ["cat"]
        assert reached_by({"field": "last_seen_at", "exists": False}) == ["bob"]
        assert reached_by({"field": "marketing_opt_in", "eq": True}) == ["ann"]
        assert reached_by({"field": "digest", "in": ["daily", "hourly"]}) == ["ann"]
        assert reached_by({"field": "language", "eq": "de"}) == ["dan"]
        assert reached_by({"field": "user_id", "lt": "c"}) == ["ann", "bob"]
        assert reached_by({"field": "email", "in": ["cat@example.com", "dan@example.com"]}) == ["cat", "dan"]
        assert reached_by({"field": "created_at", "gt": "2000-01-01"}) == ["ann", "bob", "cat", "dan"]
        assert reached_by({"field": "created_at", "lt": "2000-01-01"}) == []

    def test_all_any_and_not_combine(self, people):
        assert reached_by({"any": [{"attr": "country", "eq": "DE"}, {"field": "phone", "exists": True}]}) == ["cat", "dan"]
        assert reached_by({"all": [{"field": "email", "exists": True},
                                   {"not": {"any": [{"attr": "country", "eq": "US"}, {"attr": "age", "lt": 30}]}}]}
                          ) == ["cat"]
        assert reached_by({"not": {"not": {"attr": "plan", "eq": "free"}}}) == ["bob"]


class TestSegments:
    def test_a_topic_reaches_its_subscribers(self, people):
        RecipientTopic.objects.create(recipient=people["bob"], topic="sports")
        RecipientTopic.objects.create(recipient=people["dan"], topic="sports")
        RecipientTopic.objects.create(recipient=people["ann"], topic="news")

        assert reached({"topic": "sports"}) == ["bob", "dan"]
        assert segment_count(campaign_for({"topic": "sports"})) == 2

    def test_everyone(self, people):
        assert reached({"all": True}) == ["ann", "bob", "cat", "dan"]
        assert segment_count(campaign_for({"all": True})) == 4

    def test_a_filter_counts_what_it_reaches(self, people):
        assert segment_count(campaign_for({"filter": {"attr": "country", "exists": True}})) == 3

    def test_chunks_read_the_segment_by_id_range(self, people):
        ids = sorted(r.id for r in people.values())
        campaign = campaign_for({"filter": {"field": "email", "exists": True}})

        assert list(segment_recipients(campaign).filter(id__gt=ids[0], id__lte=ids[2]).values_list(
            "user_id", flat=True)) == ["cat"]
        assert list(segment_recipients(campaign, after_id=ids[0], last_id=ids[2]).values_list(
            "user_id", flat=True)) == ["cat"]
        assert sorted(segment_recipients(campaign, after_id=ids[0]).values_list("user_id", flat=True)) == ["cat", "dan"]

    @pytest.mark.parametrize("segment, everyone", [
        ({"topic": "sports"}, ["ann", "cat", "dan"]), ({"all": True}, ["ann", "bob", "cat", "dan"]),
        ({"filter": {"field": "email", "exists": True}}, ["ann", "cat", "dan"]),
        ({"filter": {"not": {"attr": "country", "eq": "CA"}}}, ["ann", "cat", "dan"])],
        ids=["topic", "all", "filter", "not"])
    def test_walking_the_segment_in_chunks_reaches_each_recipient_once(self, people, segment, everyone):
        for recipient in people.values():
            if recipient.user_id != "bob":
                RecipientTopic.objects.create(recipient=recipient, topic="sports")
        campaign = campaign_for(segment)
        walked, cursor = [], 0

        while ids := segment_ids_after(campaign, cursor, 2):
            walked += list(segment_recipients(campaign, after_id=cursor, last_id=ids[-1]).order_by("id")
                           .values_list("user_id", flat=True))
            cursor = ids[-1]

        assert walked == sorted(segment_recipients(campaign).values_list("user_id", flat=True))
        assert sorted(walked) == everyone


@pytest.fixture
def saved_campaign(db):
    producer, _ = Producer.create_with_key("shop", ["send"])
    notification_type = NotificationType.objects.create(key="promo", category="marketing")
    return Campaign.objects.create(producer=producer, name="promo", type=notification_type,
                                   segment={"user_ids": []})


class TestMembers:
    def test_members_are_the_known_user_ids_and_unknown_ones_are_left_out(self, people, saved_campaign):
        members = segment_members_store(saved_campaign, ["ann", "nobody", "cat", "ann", "ghost"])

        assert members == 2
        assert sorted(CampaignMember.objects.values_list("recipient__user_id", flat=True)) == ["ann", "cat"]
        assert not Recipient.objects.filter(user_id__in=["nobody", "ghost"]).exists()
        assert sorted(segment_recipients(saved_campaign).values_list("user_id", flat=True)) == ["ann", "cat"]
        assert segment_count(saved_campaign) == 2
        assert segment_ids_after(saved_campaign, 0, 10) == sorted([people["ann"].id, people["cat"].id])
        assert list(segment_recipients(saved_campaign, after_id=people["ann"].id).values_list(
            "user_id", flat=True)) == ["cat"]

    def test_storing_again_adds_nothing_and_answers_the_same(self, people, saved_campaign):
        segment_members_store(saved_campaign, ["ann", "cat"])

        assert segment_members_store(saved_campaign, ["ann", "cat"]) == 2
        assert CampaignMember.objects.count() == 2

    def test_more_ids_than_one_statement_may_bind_are_stored_in_batches(self, saved_campaign):
        # 2,500: over SQLite's 999 variables, so this batches there too.
        Recipient.objects.bulk_create([Recipient(user_id=f"m_{n}") for n in range(2500)])
        user_ids = [f"m_{n}" for n in range(2500)] + [f"unknown_{n}" for n in range(500)]

        assert segment_members_store(saved_campaign, user_ids) == 2500
        assert segment_count(saved_campaign) == 2500
