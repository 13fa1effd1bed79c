"""POST /api/v1/notifications/{id}/cancel and POST /api/v1/notifications/cancel {"idempotency_key"}: 200 with
what was cancelled and what had gone out, every time; 404 for what is not this producer's; 400 for no key."""
import pytest
from rest_framework.test import APIClient

from notifier.models import Delivery, Notification
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db


def send(api, **body):
    response = api.post("/api/v1/notifications", {"type": "order_shipped", "data": {"order_id": "789"}, **body},
                        format="json")
    assert response.status_code == 202, response.content
    return [n["id"] for n in response.json()["notifications"]]


def cancel(api, notification_id):
    return api.post(f"/api/v1/notifications/{notification_id}/cancel")


def cancel_by_key(api, body):
    return api.post("/api/v1/notifications/cancel", body, format="json")


def other_producers_api():
    _, key = make_producer("other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_it_answers_what_was_cancelled_and_what_had_gone_out(api, order_type, reachable_user):
    [notification_id] = send(api, user_id="u_42", channels=["push", "email"])
    route_due("high")
    deliver_due("push", "high")

    response = cancel(api, notification_id)

    assert response.status_code == 200
    [answer] = response.json()["notifications"]
    assert answer["id"] == notification_id and answer["user_id"] == "u_42"
    assert answer["status"] == "partially_delivered" and answer["cancelled_at"]
    email = Delivery.objects.get(channel="email")
    assert answer["cancelled"] == [{"delivery_id": email.id, "channel": "email", "target": "u_42@example.com",
                                    "status": "cancelled", "was": "queued"}]
    assert sorted((d["channel"], d["target"], d["status"]) for d in answer["already_sent"]) == [
        ("push", "android-token-1", "delivered"), ("push", "ios-token-1", "delivered")]
    assert answer["in_flight"] == [] and answer["not_sent"] == [] and answer["digests"] == []


def test_a_second_cancel_is_harmless_and_answers_200_with_nothing_newly_cancelled(api, order_type, reachable_user):
    [notification_id] = send(api, user_id="u_42")
    route_due("high")
    first = cancel(api, notification_id).json()["notifications"][0]

    response = cancel(api, notification_id)

    assert response.status_code == 200
    second = response.json()["notifications"][0]
    assert second["cancelled"] == [] and second["already_sent"] == first["already_sent"]
    assert len(second["not_sent"]) == len(first["cancelled"]) == 5
    assert second["status"] == "cancelled"
    assert api.get(f"/api/v1/notifications/{notification_id}").json()["cancelled_at"] == first["cancelled_at"]


@pytest.mark.parametrize("notification_id", ["00000000-0000-0000-0000-000000000001", "not-a-uuid"])
def test_an_unknown_id_is_a_404_in_the_error_envelope(api, notification_id):
    response = cancel(api, notification_id)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_another_producers_notification_is_a_404_and_stays_as_it_was(api, order_type, reachable_user):
    [notification_id] = send(api, user_id="u_42")

    response = cancel(other_producers_api(), notification_id)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Notification.objects.get(id=notification_id).status == "accepted"


class TestByIdempotencyKey:
    def test_it_cancels_every_notification_the_request_made(self, api, order_type):
        ids = send(api, recipients=[{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c"}], idempotency_key="k-1")
        [kept] = send(api, user_id="d", idempotency_key="k-2")

        response = cancel_by_key(api, {"idempotency_key": "k-1"})

        assert response.status_code == 200
        answers = response.json()["notifications"]
        assert sorted(a["id"] for a in answers) == sorted(ids)
        assert sorted(a["user_id"] for a in answers) == ["a", "b", "c"]
        assert {a["status"] for a in answers} == {"cancelled"}
        assert Notification.objects.get(id=kept).status == "accepted"
        assert cancel_by_key(api, {"idempotency_key": "k-1"}).status_code == 200  # again: harmless

    @pytest.mark.parametrize("body", [{}, {"idempotency_key": ""}, {"idempotency_key": None}])
    def test_a_missing_or_empty_key_is_a_400_naming_it(self, api, body):
        response = cancel_by_key(api, body)

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["idempotency_key"]

    def test_an_unknown_field_is_a_400_naming_it(self, api):
        response = cancel_by_key(api, {"idempotency_key": "k-1", "id": "x"})

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["id"]

    def test_a_key_this_producer_never_sent_is_a_404(self, api, order_type):
        send(other_producers_api(), user_id="u_1", idempotency_key="k-1")

        response = cancel_by_key(api, {"idempotency_key": "k-1"})

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert Notification.objects.get().status == "accepted"
