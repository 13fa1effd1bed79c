"""GET /api/v1/dead-letters and the replays, as a producer sees them."""
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.models import Delivery
from tests.conftest import make_producer
from tests.support.dead_letters import make_dead_letters, use_scripted_providers

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    """The producer whose notifications make_dead_letters sends (the first one)."""
    producer, key = make_producer("shop")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def scripted(settings):
    use_scripted_providers(settings)


@pytest.fixture
def dead(api, scripted, order_type):
    return make_dead_letters(order_type, 1, "email", code="421")[0]


def test_a_dead_letter_is_listed_with_every_attempts_error(api, dead, settings):
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]

    body = api.get("/api/v1/dead-letters").json()

    [item] = body["dead_letters"]
    assert body["next_cursor"] is None
    assert item["id"] == dead.id and item["notification_id"] == str(dead.notification_id)
    assert (item["user_id"], item["channel"], item["target"], item["provider"], item["attempts"]) == (
        "dl-0", "email", "dl-0@example.com", "scripted", max_attempts)
    assert [e["number"] for e in item["errors"]] == list(range(1, max_attempts + 1))
    first = item["errors"][0]
    assert (first["outcome"], first["provider_code"], first["message"]) == ("transient", "421", "421: scripted outage")
    assert first["at"]
    assert item["replayed_as"] is None


@pytest.mark.parametrize("query, listed", [
    ("", {"a-0", "b-0", "c-0"}),
    ("channel=sms", {"c-0"}),
    ("provider=scripted", {"a-0", "b-0", "c-0"}),
    ("provider=twilio", set()),
    ("type=order_shipped", {"a-0", "b-0", "c-0"}),
    ("type=nope", set()),
    ("error_code=554", {"b-0"}),
])
def test_the_listing_filters_by_each_field(api, scripted, order_type, query, listed):
    make_dead_letters(order_type, 1, "email", code="503", user_prefix="a")
    make_dead_letters(order_type, 1, "email", code="554", user_prefix="b")
    make_dead_letters(order_type, 1, "sms", code="30003", user_prefix="c")

    body = api.get(f"/api/v1/dead-letters?{query}").json()

    assert {d["user_id"] for d in body["dead_letters"]} == listed


def test_the_listing_filters_by_time_and_pages_newest_first(api, scripted, order_type):
    dead = make_dead_letters(order_type, 3, "email")
    Delivery.objects.filter(id=dead[0].id).update(failed_at=timezone.now() - timedelta(days=2))
    day_ago = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")

    assert {d["id"] for d in api.get(f"/api/v1/dead-letters?until={day_ago}").json()["dead_letters"]} == {dead[0].id}
    assert {d["id"] for d in api.get(f"/api/v1/dead-letters?since={day_ago}").json()["dead_letters"]} == {
        dead[1].id, dead[2].id}
    first = api.get("/api/v1/dead-letters?limit=2").json()
    rest = api.get(f"/api/v1/dead-letters?limit=2&cursor={first['next_cursor']}").json()
    assert [d["id"] for d in first["dead_letters"] + rest["dead_letters"]] == [dead[2].id, dead[1].id, dead[0].id]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("query, field", [
    ("channel=fax", "channel"),
    ("since=yesterday", "since"),
    ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ("limit=0", "limit"),
    ("cursor=nope", "cursor"),
    ("error_code=" + "9" * 65, "error_code"),
])
def test_a_bad_query_field_is_a_400_naming_it(api, query, field):
    response = api.get(f"/api/v1/dead-letters?{query}")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_another_producers_dead_letters_are_neither_listed_nor_replayed(dead):
    _, key = make_producer("other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert other.get("/api/v1/dead-letters").json()["dead_letters"] == []
    assert other.post(f"/api/v1/dead-letters/{dead.id}/replay", {}, format="json").status_code == 404
    assert other.post("/api/v1/dead-letters/replay", {}, format="json").json()["replayed"] == 0
    assert not Delivery.objects.filter(replayed_from=dead).exists()


def test_a_replay_answers_202_with_the_new_delivery_and_again_with_the_same_one(api, dead):
    first = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {}, format="json")
    second = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {}, format="json")

    assert first.status_code == second.status_code == 202
    assert first.json()["created"] is True and second.json()["created"] is False
    assert first.json()["delivery_id"] == second.json()["delivery_id"]
    assert Delivery.objects.filter(replayed_from=dead).count() == 1
    [listed] = api.get("/api/v1/dead-letters").json()["dead_letters"]
    assert listed["replayed_as"] == first.json()["delivery_id"]


def test_a_replay_to_another_channel(api, dead):
    response = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {"channel": "sms"}, format="json")

    assert response.status_code == 202
    new = Delivery.objects.get(id=response.json()["delivery_id"])
    assert (new.channel, new.target, new.replayed_from_id) == ("sms", "+14155550100", dead.id)


def test_a_replay_to_a_channel_the_user_cannot_be_reached_on_is_a_409_naming_channel(api, dead):
    recipient = dead.notification.recipient
    recipient.phone = ""
    recipient.save()

    response = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {"channel": "sms"}, format="json")

    assert response.status_code == 409
    assert "recipient has no phone number" in response.json()["error"]["fields"]["channel"][0]


@pytest.mark.parametrize("delivery_id", ["12345", "abc", "99999999999999999999"])
def test_replaying_what_is_not_a_dead_letter_is_a_404(api, delivery_id):
    assert api.post(f"/api/v1/dead-letters/{delivery_id}/replay", {}, format="json").status_code == 404


def test_an_unknown_replay_channel_is_a_400_naming_channel(api, dead):
    response = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {"channel": "fax"}, format="json")

    assert response.status_code == 400
    assert "channel" in response.json()["error"]["fields"]


def test_a_bulk_replay_replays_what_the_same_query_lists(api, scripted, order_type):
    make_dead_letters(order_type, 2, "email", code="503", user_prefix="a")
    make_dead_letters(order_type, 1, "email", code="554", user_prefix="b")

    response = api.post("/api/v1/dead-letters/replay?error_code=503", {"channel": "sms"}, format="json")

    assert response.status_code == 202
    assert response.json() == {"replayed": 2, "refused": 0, "refusals": [], "remaining": 0}
    replays = Delivery.objects.filter(replayed_from__isnull=False)
    assert {(d.channel, d.notification.recipient.user_id) for d in replays} == {("sms", "a-0"), ("sms", "a-1")}


def test_a_bulk_replay_names_what_it_refused_and_why(api, scripted, order_type):
    dead = make_dead_letters(order_type, 2, "email")
    recipient = dead[0].notification.recipient
    recipient.phone = ""
    recipient.save()

    body = api.post("/api/v1/dead-letters/replay", {"channel": "sms"}, format="json").json()

    assert (body["replayed"], body["refused"]) == (1, 1)
    assert body["refusals"][0]["delivery_id"] == dead[0].id
    assert "no phone number" in body["refusals"][0]["reason"]


def test_the_schema_describes_the_dead_letter_endpoints_and_their_errors():
    schema = APIClient().get("/api/v1/schema?format=json").json()
    paths = schema["paths"]

    listing = paths["/api/v1/dead-letters"]["get"]
    assert {"200", "400"} <= set(listing["responses"])
    assert {"channel", "provider", "type", "error_code", "since", "until", "cursor", "limit"} <= {
        p["name"] for p in listing["parameters"]}
    assert {"202", "400", "404", "409"} <= set(paths["/api/v1/dead-letters/{delivery_id}/replay"]["post"]["responses"])
    assert {"202", "400"} <= set(paths["/api/v1/dead-letters/replay"]["post"]["responses"])


def test_the_notification_shows_the_replay_beside_the_dead_letter_it_replays(api, dead):
    replay_id = api.post(f"/api/v1/dead-letters/{dead.id}/replay", {}, format="json").json()["delivery_id"]

    body = api.get(f"/api/v1/notifications/{dead.notification_id}").json()

    assert body["status"] == "processing"
    assert {(d["id"], d["status"], d["replayed_from"]) for d in body["deliveries"]} == {
        (dead.id, "dead", None), (replay_id, "queued", dead.id)}
