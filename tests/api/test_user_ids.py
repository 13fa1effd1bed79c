"""A user id is one path segment of /api/v1/users/{user_id}/…: the alphabet is defined once
(notifier.validation.USER_ID) and every way in refuses the rest, so no user can exist that its own
endpoints cannot reach."""
import pytest
from django.core.exceptions import ValidationError

from notifier.models import Recipient

pytestmark = pytest.mark.django_db

REACHABLE = ["u_42", "auth0|5f7c1e", "google-oauth2|1234", "a.b+c@example.com", "user:42",
             "0b6a4d1e-8f3c-4c1e-9e59-8f1a6c2b7d10", "x" * 255]
UNREACHABLE = ["a/b", "a b", "tab\tid", "", "x" * 256, "café", "a?b", "a#b", "a%2Fb", "line\nbreak"]

USER_PATHS = [
    ("get", "/api/v1/users/{}", None),
    ("put", "/api/v1/users/{}", {"email": "a@example.com"}),
    ("post", "/api/v1/users/{}/token", None),
    ("get", "/api/v1/users/{}/devices", None),
    ("post", "/api/v1/users/{}/devices", {"platform": "ios", "token": "t1"}),
    ("delete", "/api/v1/users/{}/devices/t1", None),
    ("get", "/api/v1/users/{}/notifications", None),
    ("get", "/api/v1/users/{}/notifications/unread-count", None),
    ("post", "/api/v1/users/{}/notifications/mark-all-read", None),
    ("patch", "/api/v1/users/{}/notifications/0b6a4d1e-8f3c-4c1e-9e59-8f1a6c2b7d10", {"read": True}),
    ("get", "/api/v1/users/{}/notification-preferences", None),
    ("put", "/api/v1/users/{}/notification-preferences", {"marketing_opt_in": True}),
    ("patch", "/api/v1/users/{}/notification-preferences", {"marketing_opt_in": True}),
]


@pytest.mark.parametrize("user_id", UNREACHABLE)
def test_post_notifications_refuses_a_user_id_outside_the_alphabet(api, order_type, user_id):
    single = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": user_id,
                                                "data": {"order_id": "1"}}, format="json")
    many = api.post("/api/v1/notifications", {"type": "order_shipped", "data": {"order_id": "1"},
                                              "recipients": [{"user_id": "ok"}, {"user_id": user_id}]}, format="json")

    assert single.status_code == many.status_code == 400
    assert "user_id" in single.json()["error"]["fields"]
    assert "recipients[1].user_id" in many.json()["error"]["fields"]
    assert not Recipient.objects.exists()


@pytest.mark.parametrize("method, path, body", USER_PATHS, ids=[f"{m} {p}" for m, p, _ in USER_PATHS])
def test_every_users_path_refuses_a_user_id_outside_the_alphabet(api, method, path, body):
    response = getattr(api, method)(path.format("a%20b"), body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["user_id"]
    assert "A user id is 1 to 255 characters" in response.json()["error"]["message"]
    assert not Recipient.objects.exists()


def test_a_user_id_longer_than_255_characters_is_refused_in_the_path(api):
    response = api.put(f"/api/v1/users/{'x' * 256}", {}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["user_id"]


@pytest.mark.parametrize("user_id", REACHABLE)
def test_a_user_id_in_the_alphabet_is_accepted_and_reachable_at_its_own_path(api, order_type, user_id):
    accepted = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": user_id,
                                                  "data": {"order_id": "1"}}, format="json")

    assert accepted.status_code == 202
    assert api.get(f"/api/v1/users/{user_id}").json()["user_id"] == user_id
    assert api.put(f"/api/v1/users/{user_id}", {"language": "de"}, format="json").status_code == 200


@pytest.mark.parametrize("user_id", ["a/b", "a b", ""])
def test_the_admin_refuses_a_user_id_outside_the_alphabet(user_id):
    with pytest.raises(ValidationError) as refused:
        Recipient(user_id=user_id).full_clean()

    assert "user_id" in refused.value.message_dict
