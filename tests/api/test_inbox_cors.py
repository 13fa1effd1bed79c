"""CORS for the inbox endpoints alone (notifier/api/cors.py): a page on an origin listed in
NOTIFIER_INBOX_ALLOWED_ORIGINS may call them from the browser with a recipient token; nothing else is
opened to it, and no other origin gets a CORS header."""
import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.com"


@pytest.fixture(autouse=True)
def allowed(settings):
    settings.NOTIFIER_INBOX_ALLOWED_ORIGINS = [SHOP]


@pytest.fixture
def app(api):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api.post('/api/v1/users/u_1/token').json()['token']}")
    return client


INBOX_PATHS = [
    ("get", "/api/v1/users/u_1/notifications"),
    ("get", "/api/v1/users/u_1/notifications/unread-count"),
    ("post", "/api/v1/users/u_1/notifications/mark-all-read"),
    ("patch", "/api/v1/users/u_1/notifications/00000000-0000-0000-0000-000000000000"),
]


@pytest.mark.parametrize("method, path", INBOX_PATHS)
def test_an_allowed_origin_may_call_the_inbox_endpoints(app, method, path):
    response = getattr(app, method)(path, {"read": True} if method == "patch" else None, format="json",
                                    HTTP_ORIGIN=SHOP)

    assert response.status_code in (200, 404)
    assert response["Access-Control-Allow-Origin"] == SHOP and "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.parametrize("path", [p for _, p in INBOX_PATHS] + ["/api/v1/users/u_1/notifications/stream"])
def test_the_preflight_is_answered_before_authentication(path):
    response = APIClient().options(path, HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
                                   HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type")

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert set(response["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST", "PATCH"}
    assert "Authorization" in response["Access-Control-Allow-Headers"]
    assert "Last-Event-ID" in response["Access-Control-Allow-Headers"]


def test_another_origin_gets_no_cors_header(app):
    response = app.get("/api/v1/users/u_1/notifications", HTTP_ORIGIN="https://evil.example")
    preflight = APIClient().options("/api/v1/users/u_1/notifications", HTTP_ORIGIN="https://evil.example",
                                    HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight and preflight.status_code != 204


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/users/u_1/notification-preferences"),
    ("post", "/api/v1/users/u_1/token"),
    ("post", "/api/v1/users/u_1/preferences-link"),
    ("post", "/api/v1/notifications"),
    ("get", "/api/v1/"),
    ("post", "/api/v1/users/u_1/notifications/00000000-0000-0000-0000-000000000000/events"),
    ("get", "/preferences/anything"),
    ("options", "/api/v1/users/u_1/notification-preferences"),
])
def test_no_other_endpoint_gets_a_cors_header_even_for_an_allowed_origin(api, method, path):
    response = getattr(api, method)(path, HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert "Access-Control-Allow-Origin" not in response
    assert response.status_code != 204


def test_with_no_origins_configured_nothing_is_opened(app, settings):
    settings.NOTIFIER_INBOX_ALLOWED_ORIGINS = []

    assert "Access-Control-Allow-Origin" not in app.get("/api/v1/users/u_1/notifications", HTTP_ORIGIN=SHOP)


def test_a_star_allows_any_origin(app, settings):
    settings.NOTIFIER_INBOX_ALLOWED_ORIGINS = ["*"]

    response = app.get("/api/v1/users/u_1/notifications/unread-count", HTTP_ORIGIN="https://any.example")

    assert response["Access-Control-Allow-Origin"] == "https://any.example"


def test_notifiers_own_origin_may_call_them_for_its_demo_page_beside_a_stream_server(app, settings):
    # make run: /demo/inbox is on NOTIFIER_PUBLIC_URL's origin, its stream on the stream server's port.
    settings.NOTIFIER_INBOX_ALLOWED_ORIGINS = []
    settings.NOTIFIER_PUBLIC_URL = "http://127.0.0.1:8000"

    own = app.get("/api/v1/users/u_1/notifications", HTTP_ORIGIN="http://127.0.0.1:8000")
    other_port = app.get("/api/v1/users/u_1/notifications", HTTP_ORIGIN="http://127.0.0.1:8002")

    assert own["Access-Control-Allow-Origin"] == "http://127.0.0.1:8000"
    assert "Access-Control-Allow-Origin" not in other_port
