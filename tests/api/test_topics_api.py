"""Topics: PUT / DELETE /api/v1/users/{user_id}/topics/{topic}, GET /api/v1/users/{user_id}/topics, and
`topics` (the whole list) and `last_seen_at` in PUT /api/v1/users/{user_id}. A campaign's {"topic": ...}
segment reaches a topic's subscribers; {"field": "last_seen_at", ...} filters read when a user was seen."""
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from notifier import services
from notifier.models import Recipient, RecipientTopic

pytestmark = pytest.mark.django_db


def topics_of(user_id: str) -> list[str]:
    return sorted(RecipientTopic.objects.filter(recipient__user_id=user_id).values_list("topic", flat=True))


class TestOneTopic:
    def test_subscribing_creates_the_user_and_answers_201_then_200(self, api):
        first = api.put("/api/v1/users/u_1/topics/sports")
        again = api.put("/api/v1/users/u_1/topics/sports")

        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["topic"] == "sports" and first.json()["created_at"] == again.json()["created_at"]
        assert topics_of("u_1") == ["sports"]

    def test_listing_answers_every_topic_by_name(self, api):
        for topic in ("sports", "eu.news-weekly", "team:42"):
            api.put(f"/api/v1/users/u_1/topics/{topic}")

        body = api.get("/api/v1/users/u_1/topics").json()

        assert [entry["topic"] for entry in body["topics"]] == ["eu.news-weekly", "sports", "team:42"]
        assert all(entry["created_at"] for entry in body["topics"])

    def test_unsubscribing_answers_204_then_404(self, api):
        api.put("/api/v1/users/u_1/topics/sports")

        assert api.delete("/api/v1/users/u_1/topics/sports").status_code == 204
        again = api.delete("/api/v1/users/u_1/topics/sports")

        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
        assert topics_of("u_1") == []

    def test_an_unknown_users_topics_are_404(self, api):
        assert api.get("/api/v1/users/nobody/topics").status_code == 404
        assert api.delete("/api/v1/users/nobody/topics/sports").status_code == 404

    @pytest.mark.parametrize("topic", ["no%20spaces", "x" * 101, "%C3%A9t%C3%A9", "a@b"])
    def test_a_bad_topic_in_the_path_is_a_400_naming_it(self, api, topic):
        response = api.put(f"/api/v1/users/u_1/topics/{topic}")

        assert response.status_code == 400, response.content
        assert list(response.json()["error"]["fields"]) == ["topic"]
        assert not Recipient.objects.exists()

    def test_a_user_has_only_so_many_topics(self, api, monkeypatch):
        monkeypatch.setattr(services, "MAX_TOPICS_PER_USER", 2)
        api.put("/api/v1/users/u_1/topics/a")
        api.put("/api/v1/users/u_1/topics/b")

        response = api.put("/api/v1/users/u_1/topics/c")

        assert response.status_code == 400
        assert "The user has 2 topics already" in response.json()["error"]["fields"]["topic"][0]
        assert api.put("/api/v1/users/u_1/topics/a").status_code == 200  # subscribed already: no new row
        assert topics_of("u_1") == ["a", "b"]


class TestPutUser:
    def test_topics_replace_the_users_topics(self, api):
        api.put("/api/v1/users/u_1/topics/old")
        api.put("/api/v1/users/u_1/topics/kept")

        response = api.put("/api/v1/users/u_1", {"topics": ["kept", "new"]}, format="json")

        assert response.status_code == 200 and response.json()["topics"] == ["kept", "new"]
        assert topics_of("u_1") == ["kept", "new"]
        assert api.get("/api/v1/users/u_1").json()["topics"] == ["kept", "new"]

    def test_an_empty_list_removes_every_topic_and_no_topics_field_keeps_them(self, api):
        api.put("/api/v1/users/u_1", {"topics": ["a", "b"]}, format="json")
        api.put("/api/v1/users/u_1", {"email": "a@example.com"}, format="json")
        assert topics_of("u_1") == ["a", "b"]

        api.put("/api/v1/users/u_1", {"topics": []}, format="json")

        assert topics_of("u_1") == []

    @pytest.mark.parametrize("topics, field, message", [
        ("sports", "topics", 'Expected a list of items but got type "str".'),
        (["ok", "not ok"], "topics[1]", "A topic is 1 to 100 characters"),
        (["a", "b", "a"], "topics[2]", "Duplicate topic 'a': name each topic once."),
        (["ok", None], "topics[1]", "This field may not be null."),
    ])
    def test_bad_topics_are_a_400_naming_the_entry(self, api, topics, field, message):
        response = api.put("/api/v1/users/u_1", {"topics": topics, "email": "a@example.com"}, format="json")

        assert response.status_code == 400
        assert message in response.json()["error"]["fields"][field][0]
        assert not Recipient.objects.exists()

    def test_too_many_topics_are_a_400(self, api, monkeypatch):
        response = api.put("/api/v1/users/u_1", {"topics": [f"t{n}" for n in range(1001)]}, format="json")

        assert response.status_code == 400
        assert "Ensure this field has no more than 1000 elements." in response.json()["error"]["fields"]["topics"]

    def test_last_seen_at_is_stored_without_an_offset_as_utc(self, api):
        response = api.put("/api/v1/users/u_1", {"last_seen_at": "2026-03-01T10:00:00"}, format="json")

        assert response.status_code == 201
        assert Recipient.objects.get().last_seen_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
        assert response.json()["last_seen_at"].startswith("2026-03-01T10:00:00")

    @pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", 20260301, True])
    def test_a_bad_last_seen_at_is_a_400_naming_it(self, api, value):
        response = api.put("/api/v1/users/u_1", {"last_seen_at": value}, format="json")

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["last_seen_at"]


class TestLastSeen:
    def test_registering_or_refreshing_a_device_marks_the_user_seen(self, api):
        before = timezone.now()
        api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")
        first = Recipient.objects.get().last_seen_at
        Recipient.objects.update(last_seen_at=datetime(2020, 1, 1, tzinfo=UTC))

        api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")

        assert first >= before
        assert Recipient.objects.get().last_seen_at >= first
