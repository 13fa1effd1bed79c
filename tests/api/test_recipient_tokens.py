import pytest
from django.core import signing
from django.test import override_settings
from rest_framework.test import APIClient

from notifier.api import auth

pytestmark = pytest.mark.django_db


def recipient_client(api, user_id):
    response = api.post(f"/api/v1/users/{user_id}/token")
    assert response.status_code == 201
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client


def test_a_recipient_token_cannot_use_producer_endpoints(api, order_type):
    client = recipient_client(api, "u_1")

    response = client.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_1"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["message"] == "A recipient token reaches only its own user's inbox and preferences."
    assert client.get("/api/v1/sandbox/messages").status_code == 403
    assert client.post("/api/v1/users/u_1/token").status_code == 403  # it cannot mint tokens


def test_an_expired_or_forged_recipient_token_is_401(api):
    client = recipient_client(api, "u_1")
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Bearer rt_eyJ1IjoidV8xIn0:forged:signature")

    with override_settings(NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS=-1):
        assert client.get("/api/v1/sandbox/messages").status_code == 401
    assert forged.get("/api/v1/sandbox/messages").status_code == 401


def test_a_token_is_checked_once_per_process_and_still_expires(api, monkeypatch):
    token = api.post("/api/v1/users/u_1/token").json()["token"]
    checks = []
    loads = signing.loads
    monkeypatch.setattr(signing, "loads", lambda *args, **kwargs: checks.append(1) or loads(*args, **kwargs))

    assert auth.recipient_token_principal(token).user_id == "u_1"
    assert auth.recipient_token_principal(token).user_id == "u_1"
    assert len(checks) == 1
    with override_settings(NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS=-1):
        assert auth.recipient_token_principal(token) is None  # its expiry is checked on every use
    assert auth.recipient_token_principal(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
