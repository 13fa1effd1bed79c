from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.models import IdempotencyKey, Notification, NotificationStatus, Recipient
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db


def post(api, body, **headers):
    return api.post("/api/v1/notifications", body, format="json", **headers)


def test_it_accepts_a_notification_for_one_user(api, order_type, reachable_user):
    response = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}})

    assert response.status_code == 202
    [item] = response.json()["notifications"]
    assert item["user_id"] == "u_42" and item["status"] == "accepted"
    notification = Notification.objects.get(id=item["id"])
    assert notification.status == NotificationStatus.ACCEPTED
    assert notification.priority == "high"  # the type's default
    assert notification.data == {"order_id": "789"}


def test_it_accepts_many_recipients_and_applies_inline_contact_fields(api, order_type, reachable_user):
    body = {
        "type": "order_shipped",
        "data": {"order_id": "1"},
        "recipients": [
            {"user_id": "u_42", "email": "new@example.com"},
            {"user_id": "u_new", "phone": "+447700900123", "timezone": "Europe/London", "language": "en-GB",
             "data": {"order_id": "2"}, "channels": ["sms"]},
        ],
        "priority": "low",
    }

    response = post(api, body)

    assert response.status_code == 202
    ids = [n["id"] for n in response.json()["notifications"]]
    assert [n["user_id"] for n in response.json()["notifications"]] == ["u_42", "u_new"]
    assert Recipient.objects.get(user_id="u_42").email == "new@example.com"
    new = Recipient.objects.get(user_id="u_new")
    assert (new.phone, new.timezone, new.language) == ("+447700900123", "Europe/London", "en-GB")
    second = Notification.objects.get(id=ids[1])
    assert second.data == {"order_id": "2"} and second.channels == ["sms"] and second.priority == "low"


def test_an_unknown_user_without_contact_fields_is_created_and_reachable_in_app_only(api, order_type):
    response = post(api, {"type": "order_shipped", "user_id": "stranger", "data": {"order_id": "7"}})
    assert response.status_code == 202

    route_due("high")

    notification = Notification.objects.get(id=response.json()["notifications"][0]["id"])
    assert [d.channel for d in notification.deliveries.all()] == ["in_app"]
    skipped = {d["channel"]: d["reason"] for d in notification.decisions if d["decision"] == "skipped"}
    assert skipped == {
        "push": "recipient has no active device",
        "email": "recipient has no email address",
        "sms": "recipient has no phone number",
    }


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "no_such_type", "user_id": "u"}, "type"),
        ({"user_id": "u", "data": {"order_id": "1"}}, "type"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "channels": ["fax"]}, "channels[0]"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "channels": []}, "channels"),
        ({"type": "order_shipped", "user_id": "u", "data": {}}, "data.order_id"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "priority": "urgent"}, "priority"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "schedule_at": "tomorrow"},
         "schedule_at"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "expires_at": "2020-01-01T00:00:00Z"},
         "expires_at"),
        ({"type": "order_shipped", "recipients": [], "data": {"order_id": "1"}}, "recipients"),
        ({"type": "order_shipped", "data": {"order_id": "1"}}, "user_id"),
        ({"type": "order_shipped", "user_id": "u", "recipients": [{"user_id": "v"}], "data": {"order_id": "1"}},
         "user_id"),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "prority": "high"}, "prority"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a"}, {"email": "x@example.com"}],
          "data": {"order_id": "1"}}, "recipients[1].user_id"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a"}, {"user_id": "a"}], "data": {"order_id": "1"}},
         "recipients[1].user_id"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "channels": ["pigeon"]}],
          "data": {"order_id": "1"}}, "recipients[0].channels"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "phone": "555-1234"}], "data": {"order_id": "1"}},
         "recipients[0].phone"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "email": "not-an-email"}],
          "data": {"order_id": "1"}}, "recipients[0].email"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "timezone": "Mars/Olympus"}],
          "data": {"order_id": "1"}}, "recipients[0].timezone"),
        ({"type": "order_shipped", "recipients": [{"user_id": "a"}, {"user_id": "b", "data": {"order_id": "2"}}]},
         "recipients[0].data.order_id"),
    ],
)
def test_bad_input_gets_400_naming_the_field(api, order_type, body, field):
    response = post(api, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert Notification.objects.count() == 0


@pytest.mark.parametrize(
    "body, fields",
    [
        # A bad field no longer hides the checks across fields: each bad field is named at once.
        ({"type": "order_shipped", "user_id": "u", "data": {}, "priority": "urgent"}, {"priority", "data.order_id"}),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "phone": "555-1234"}], "data": {"order_id": "1"},
          "expires_at": "next tuesday"}, {"expires_at", "recipients[0].phone"}),
        ({"type": "order_shipped", "recipients": [{"user_id": "a", "email": "nope"}, {"user_id": "b"}], "data": {},
          "schedule_at": "soon", "expires_at": "2020-13-45T00:00:00Z", "channels": ["fax"], "prority": "low"},
         {"schedule_at", "expires_at", "channels[0]", "prority", "recipients[0].email", "recipients[0].data.order_id",
          "recipients[1].data.order_id"}),
        ({"type": "order_shipped", "data": {}, "priority": "urgent", "schedule_at": "x"},
         {"user_id", "priority", "schedule_at"}),
        ({"type": "order_shipped", "user_id": "u", "data": {"order_id": "1"}, "schedule_at": "not a date",
          "expires_at": "2020-01-01T00:00:00Z"}, {"schedule_at", "expires_at"}),
        ({"type": "no_such_type", "user_id": "u", "data": {}, "priority": "urgent",
          "expires_at": "2020-01-01T00:00:00Z"}, {"type", "priority", "expires_at"}),
        ({"type": "order_shipped", "user_id": "x" * 300, "recipients": [{"user_id": "a"}], "data": {"order_id": "1"},
          "collapse_key": "k" * 65}, {"user_id", "collapse_key"}),
    ],
)
def test_a_400_names_every_bad_field_at_once(api, order_type, body, fields):
    response = post(api, body)

    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == fields
    assert Notification.objects.count() == 0


def test_a_bad_data_object_is_named_without_guessing_at_its_variables(api, order_type):
    response = post(api, {"type": "order_shipped", "user_id": "u", "data": "order 1", "priority": "urgent"})

    assert set(response.json()["error"]["fields"]) == {"data", "priority"}


def test_more_than_1000_recipients_is_refused(api, order_type):
    recipients = [{"user_id": f"u{i}"} for i in range(1001)]

    response = post(api, {"type": "order_shipped", "recipients": recipients, "data": {"order_id": "1"}})

    assert response.status_code == 400
    assert "At most 1000 recipients" in response.json()["error"]["fields"]["recipients"][0]


def test_1000_recipients_are_accepted_in_a_handful_of_queries(api, order_type, django_assert_max_num_queries):
    recipients = [{"user_id": f"u{i}", "email": f"u{i}@example.com"} for i in range(1000)]

    with django_assert_max_num_queries(12):
        response = post(api, {"type": "order_shipped", "recipients": recipients, "data": {"order_id": "1"}})

    assert response.status_code == 202
    assert Notification.objects.count() == 1000


def test_invalid_json_is_a_400(api):
    response = api.post("/api/v1/notifications", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


class TestAuth:
    def test_a_missing_key_is_401(self, order_type):
        response = APIClient().post("/api/v1/notifications", {}, format="json")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_a_wrong_key_is_401(self, order_type):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer nk_wrong")
        assert client.post("/api/v1/notifications", {}, format="json").status_code == 401

    def test_a_malformed_header_is_401(self, producer):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {producer.key}")
        assert client.get("/api/v1/sandbox/messages").status_code == 401

    def test_a_deactivated_producer_is_401(self, api, producer):
        producer.is_active = False
        producer.save()
        assert api.get("/api/v1/sandbox/messages").status_code == 401

    def test_managing_types_needs_the_admin_scope(self, api):
        response = api.post("/api/v1/notification-types", {"key": "x", "default_channels": ["email"]}, format="json")
        assert response.status_code == 403
        assert "admin" in response.json()["error"]["message"]
        assert api.get("/api/v1/templates").status_code == 403

    def test_a_missing_notification_is_a_404_that_says_so(self, api):
        response = api.get("/api/v1/notifications/7b0c5a52-2a43-4ad4-a5b5-1c8f6a0f0a11")

        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}

    def test_a_producer_sees_only_its_own_notifications(self, api, order_type, reachable_user):
        notification_id = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}).json()[
            "notifications"][0]["id"]
        other, other_key = make_producer("other")
        other_client = APIClient()
        other_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

        assert api.get(f"/api/v1/notifications/{notification_id}").status_code == 200
        assert other_client.get(f"/api/v1/notifications/{notification_id}").status_code == 404
        assert api.get("/api/v1/notifications/not-a-uuid").status_code == 404


class TestIdempotency:
    BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}, "idempotency_key": "order-1"}

    def test_the_same_key_and_body_get_the_original_answer(self, api, order_type, reachable_user):
        first = post(api, self.BODY)
        second = post(api, self.BODY)

        assert first.status_code == second.status_code == 202
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true"
        assert Notification.objects.count() == 1

    def test_the_same_key_with_another_body_is_422(self, api, order_type, reachable_user):
        post(api, self.BODY)

        response = post(api, {**self.BODY, "data": {"order_id": "2"}})

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert Notification.objects.count() == 1

    def test_the_key_can_come_in_the_idempotency_key_header(self, api, order_type, reachable_user):
        body = {k: v for k, v in self.BODY.items() if k != "idempotency_key"}
        first = post(api, body, HTTP_IDEMPOTENCY_KEY="hdr-1")
        second = post(api, body, HTTP_IDEMPOTENCY_KEY="hdr-1")

        assert second.json() == first.json()
        assert IdempotencyKey.objects.get().key == "hdr-1"

    def test_keys_are_per_producer(self, api, order_type, reachable_user):
        post(api, self.BODY)
        other, other_key = make_producer("other")
        other_client = APIClient()
        other_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

        assert post(other_client, self.BODY).status_code == 202
        assert Notification.objects.count() == 2

    def test_keys_are_kept_at_least_24_hours_by_the_sweepers_purge(self, api, order_type, reachable_user):
        from notifier.tasks import sweep

        for key, age in (("day-old-minus-one", 23), ("day-old-plus-one", 25)):
            post(api, {**self.BODY, "idempotency_key": key})
            IdempotencyKey.objects.filter(key=key).update(created_at=timezone.now() - timedelta(hours=age))

        assert sweep.apply().get()["idempotency_keys_deleted"] == 1  # the beat task, run in-process

        assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["day-old-minus-one"]
        replay = post(api, {**self.BODY, "idempotency_key": "day-old-minus-one"})
        assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"


def test_status_shows_each_delivery(api, order_type, reachable_user):
    notification_id = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "9"}}).json()[
        "notifications"][0]["id"]
    route_due("high")
    for channel in ("push", "email", "sms", "in_app"):
        deliver_due(channel, "high")

    body = api.get(f"/api/v1/notifications/{notification_id}").json()

    assert body["status"] == "delivered"
    assert sorted((d["channel"], d["target"]) for d in body["deliveries"]) == [
        ("email", "u_42@example.com"),
        ("in_app", "u_42"),
        ("push", "android-token-1"),
        ("push", "ios-token-1"),
        ("sms", "+14155550100"),
    ]
    for delivery in body["deliveries"]:
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 1
        assert delivery["provider"] in ("sandbox", "inbox")
        assert delivery["sent_at"] and delivery["template_version"] == 1


def test_a_scheduled_notification_waits_for_its_time(api, order_type, reachable_user):
    later = timezone.now() + timedelta(hours=1)
    response = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"},
                          "schedule_at": later.isoformat()})

    assert response.json()["notifications"][0]["status"] == "scheduled"
    assert route_due("high") == 0
    Notification.objects.update(due_at=timezone.now())
    assert route_due("high") == 1


def test_a_delivery_keeps_showing_the_template_version_that_rendered_it(api, admin_api, order_type,
                                                                        reachable_user):
    first = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"},
                       "channels": ["sms"]}).json()["notifications"][0]["id"]
    route_due("high")
    published = admin_api.post("/api/v1/templates", {"type": "order_shipped", "channel": "sms", "language": "en",
                                                     "body": "v2: order {{ order_id }}"}, format="json")
    assert published.status_code == 201 and published.json()["version"] == 2
    second = post(api, {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "2"},
                        "channels": ["sms"]}).json()["notifications"][0]["id"]
    route_due("high")
    deliver_due("sms", "high")

    [old] = api.get(f"/api/v1/notifications/{first}").json()["deliveries"]
    [new] = api.get(f"/api/v1/notifications/{second}").json()["deliveries"]

    assert (old["template_version"], old["status"]) == (1, "delivered")
    assert new["template_version"] == 2
    assert Notification.objects.get(id=first).deliveries.get().content["body"] == "Order 1 ships with UPS."
