"""POST /api/v1/users/{user_id}/preferences-link: a producer (scope `tokens`) or the user's own app mints a
signed, expiring link to the hosted preference center."""
from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import make_producer

pytestmark = pytest.mark.django_db


def test_a_producer_mints_a_link_that_opens_the_users_preference_center(api):
    response = api.post("/api/v1/users/u_42/preferences-link", {"expires_in": 3600}, format="json")

    body = response.json()
    assert response.status_code == 201
    assert body["url"].startswith("http://127.0.0.1:8000/preferences/") and body["expires_in"] == 3600
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert abs(expires_at - (datetime.now(timezone.utc) + timedelta(hours=1))) < timedelta(seconds=5)
    page = Client().get(body["url"].removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200 and "Notification preferences" in page.content.decode()


def test_without_a_body_the_link_lasts_the_default(api, settings):
    settings.NOTIFIER_PREFERENCES_LINK_TTL_SECONDS = 600

    assert api.post("/api/v1/users/u_42/preferences-link").json()["expires_in"] == 600


def test_the_users_own_recipient_token_mints_its_link_and_no_one_elses(api):
    token = api.post("/api/v1/users/u_1/token").json()["token"]
    app = APIClient()
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert app.post("/api/v1/users/u_1/preferences-link").status_code == 201
    assert app.post("/api/v1/users/u_2/preferences-link").status_code == 404


def test_a_key_without_the_tokens_scope_is_refused(db):
    _, key = make_producer("reader", ("users:read",))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.post("/api/v1/users/u_1/preferences-link")

    assert response.status_code == 403 and "'tokens'" in response.json()["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({"expires_in": 5}, "expires_in"),
    ({"expires_in": 10 ** 12}, "expires_in"),
    ({"expires_in": "soon"}, "expires_in"),
    ({"ttl": 60}, "ttl"),
])
def test_a_bad_expiry_is_a_400_naming_it(api, body, field):
    response = api.post("/api/v1/users/u_1/preferences-link", body, format="json")

    assert response.status_code == 400 and field in response.json()["error"]["fields"]


def test_a_body_that_is_not_an_object_is_a_400(api):
    assert api.post("/api/v1/users/u_1/preferences-link", [], format="json").status_code == 400
