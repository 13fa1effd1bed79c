"""An unexpected exception under /api/ answers the JSON error envelope with status 500, never Django's HTML
page: from a DRF view and from a plain Django view alike. Elsewhere (admin) Django's own page stays."""
import pytest
from django.test import Client

from notifier import selectors
from notifier.webhooks import twilio

pytestmark = pytest.mark.django_db


def boom(*args, **kwargs):
    raise RuntimeError("something nobody expected")


@pytest.fixture
def client_that_sees_500s():
    return Client(raise_request_exception=False)


def test_an_unexpected_error_in_an_api_view_is_a_json_500(producer, monkeypatch, client_that_sees_500s):
    monkeypatch.setattr(selectors, "notification_for_producer", boom)

    response = client_that_sees_500s.get("/api/v1/notifications/00000000-0000-0000-0000-000000000000",
                                         HTTP_AUTHORIZATION=f"Bearer {producer.key}")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "server_error", "message": "Internal server error."}}
    assert "nobody expected" not in response.content.decode()  # no internals leak


def test_an_unexpected_error_in_a_plain_django_view_under_api_is_a_json_500(monkeypatch, client_that_sees_500s):
    monkeypatch.setattr(twilio, "signature_is_valid", boom)

    response = client_that_sees_500s.post("/api/v1/webhooks/twilio/status", {"MessageSid": "SM1"})

    assert response.status_code == 500
    assert response.json() == {"error": {"code": "server_error", "message": "Internal server error."}}


def test_outside_the_api_a_500_is_still_django_s_page(monkeypatch, client_that_sees_500s):
    from notifier import health

    monkeypatch.setattr(health, "_database", boom)

    response = client_that_sees_500s.get("/healthz")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_an_unknown_path_under_the_api_is_a_json_404(client):
    response = client.get("/api/v1/no-such-endpoint")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "No endpoint at /api/v1/no-such-endpoint."}}


def test_outside_the_api_an_unknown_path_is_still_django_s_page(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
