"""Producer keys carry scopes, and every endpoint needs exactly one: a key without it gets a 403 that names
it. Producers are the services of one organisation, so users are shared between them, but a key that only
sends cannot read inboxes or mint recipient tokens."""
import importlib
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.urls import URLPattern, reverse
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from notifier.api import urls as api_urls
from notifier.api.auth import recipient_token_issue, scope_required
from notifier.models import Producer, Recipient
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db

SCOPES = ["send", "users:read", "users:write", "inbox:read", "tokens", "admin", "campaigns"]
NOTIFICATION_ID = "00000000-0000-0000-0000-000000000001"
CAMPAIGN_ID = "00000000-0000-0000-0000-000000000002"
# Every endpoint and method of the API, and the one scope a producer key needs for it.
ENDPOINTS = [
    ("POST", "notification-create", {}, "send"),
    ("GET", "notification-detail", {"notification_id": NOTIFICATION_ID}, "send"),
    ("GET", "notification-deliveries", {"notification_id": NOTIFICATION_ID}, "send"),
    ("POST", "notification-cancel", {"notification_id": NOTIFICATION_ID}, "send"),
    ("POST", "notification-cancel-by-key", {}, "send"),
    ("GET", "user", {"user_id": "u_1"}, "users:read"),
    ("PUT", "user", {"user_id": "u_1"}, "users:write"),
    ("POST", "recipient-token", {"user_id": "u_1"}, "tokens"),
    ("POST", "preferences-link", {"user_id": "u_1"}, "tokens"),
    ("GET", "inbox", {"user_id": "u_1"}, "inbox:read"),
    ("GET", "inbox-unread", {"user_id": "u_1"}, "inbox:read"),
    ("POST", "inbox-read-all", {"user_id": "u_1"}, "inbox:read"),
    ("GET", "inbox-stream", {"user_id": "u_1"}, "inbox:read"),
    ("PATCH", "inbox-item", {"user_id": "u_1", "notification_id": NOTIFICATION_ID}, "inbox:read"),
    ("POST", "notification-events", {"user_id": "u_1", "notification_id": NOTIFICATION_ID}, "inbox:read"),
    ("GET", "notification-preferences", {"user_id": "u_1"}, "users:read"),
    ("PUT", "notification-preferences", {"user_id": "u_1"}, "users:write"),
    ("PATCH", "notification-preferences", {"user_id": "u_1"}, "users:write"),
    ("GET", "topic-list", {"user_id": "u_1"}, "users:read"),
    ("PUT", "topic-detail", {"user_id": "u_1", "topic": "sports"}, "users:write"),
    ("DELETE", "topic-detail", {"user_id": "u_1", "topic": "sports"}, "users:write"),
    ("GET", "device-list", {"user_id": "u_1"}, "users:read"),
    ("POST", "device-list", {"user_id": "u_1"}, "users:write"),
    ("DELETE", "device-detail", {"user_id": "u_1", "token": "t1"}, "users:write"),
    ("GET", "notification-type-list", {}, "admin"),
    ("POST", "notification-type-list", {}, "admin"),
    ("GET", "template-list", {}, "admin"),
    ("POST", "template-list", {}, "admin"),
    ("GET", "sandbox-messages", {}, "send"),
    ("GET", "dead-letter-list", {}, "send"),
    ("POST", "dead-letter-bulk-replay", {}, "send"),
    ("POST", "dead-letter-replay", {"delivery_id": 1}, "send"),
    ("GET", "stats", {}, "send"),
    ("GET", "campaign-list", {}, "campaigns"),
    ("POST", "campaign-list", {}, "campaigns"),
    ("GET", "campaign-detail", {"campaign_id": CAMPAIGN_ID}, "campaigns"),
    ("POST", "campaign-pause", {"campaign_id": CAMPAIGN_ID}, "campaigns"),
    ("POST", "campaign-resume", {"campaign_id": CAMPAIGN_ID}, "campaigns"),
    ("POST", "campaign-cancel", {"campaign_id": CAMPAIGN_ID}, "campaigns"),
]
# Public, like the schema (GET /api/v1/schema) and its docs page (GET /api/v1/docs): no key needed.
PUBLIC = [("GET", "api-index")]
# Public too, as plain Django views: a reader of an email reaches these with no key at all; the signed token
# in the URL is the only authority, so a bad one is a 400.
PUBLIC_TOKEN_ENDPOINTS = [
    ("GET", "unsubscribe", {"token": "not-a-token"}),
    ("POST", "unsubscribe", {"token": "not-a-token"}),
    ("GET", "track-open", {"token": "not-a-token"}),
    ("GET", "track-click", {"token": "not-a-token"}),
]
# What a key with "send" reached before keys had finer scopes; migration 0006 gives it all of these.
SEND_BEFORE_SCOPES = ["send", "users:read", "users:write", "inbox:read", "tokens"]


def client_with_scopes(scopes) -> APIClient:
    _, key = make_producer(f"p{Producer.objects.count()}", scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def call(client, method, name, kwargs):
    return getattr(client, method.lower())(reverse(name, kwargs=kwargs), {}, format="json")


def test_the_table_lists_every_method_of_every_endpoint():
    patterns = [pattern for pattern in api_urls.urlpatterns if isinstance(pattern, URLPattern)]
    handlers = {
        (pattern.name, method.upper())
        for pattern in patterns if hasattr(pattern.callback, "view_class")
        for method in ("get", "post", "put", "patch", "delete") if hasattr(pattern.callback.view_class, method)
    }
    plain_views = {pattern.name for pattern in patterns if not hasattr(pattern.callback, "view_class")}

    assert handlers == {(name, method) for method, name, _, _ in ENDPOINTS} | {(name, method) for method, name in PUBLIC}
    # A plain view is public, or it is a bug.
    assert plain_views == {name for _, name, _ in PUBLIC_TOKEN_ENDPOINTS}


@pytest.mark.parametrize("method, name", PUBLIC)
def test_a_public_endpoint_answers_without_a_key_and_with_a_bad_one(method, name):
    anonymous, bad_key = APIClient(), APIClient()
    bad_key.credentials(HTTP_AUTHORIZATION="Bearer nk_not-a-key")

    assert call(anonymous, method, name, {}).status_code == 200
    assert call(bad_key, method, name, {}).status_code == 200


@pytest.mark.parametrize("method, name, kwargs", PUBLIC_TOKEN_ENDPOINTS,
                         ids=[f"{m} {n}" for m, n, _ in PUBLIC_TOKEN_ENDPOINTS])
def test_a_public_token_endpoint_needs_no_key_and_refuses_a_bad_token(method, name, kwargs):
    response = getattr(APIClient(enforce_csrf_checks=True), method.lower())(reverse(name, kwargs=kwargs))

    assert response.status_code == 400


@pytest.mark.parametrize("method, name, kwargs, scope", ENDPOINTS, ids=[f"{m} {n}" for m, n, _, _ in ENDPOINTS])
def test_a_key_without_the_endpoints_scope_gets_a_403_naming_it(method, name, kwargs, scope):
    response = call(client_with_scopes([s for s in SCOPES if s != scope]), method, name, kwargs)

    assert response.status_code == 403
    assert response.json()["error"]["message"] == f"This producer key lacks the '{scope}' scope."


@pytest.mark.parametrize("method, name, kwargs, scope", ENDPOINTS, ids=[f"{m} {n}" for m, n, _, _ in ENDPOINTS])
def test_a_key_with_only_the_endpoints_scope_gets_past_the_check(method, name, kwargs, scope):
    response = call(client_with_scopes([scope]), method, name, kwargs)

    assert response.status_code not in (401, 403), response.content


def test_head_needs_the_scope_of_get():
    assert client_with_scopes(["users:write"]).head("/api/v1/users/u_1").status_code == 403
    assert client_with_scopes(["users:read"]).head("/api/v1/users/u_1").status_code == 404


def test_a_view_method_that_names_no_scope_is_an_error_not_an_open_door():
    class Forgotten(APIView):
        required_scopes = {"GET": "send"}

        def post(self, request):
            return Response({})

    with pytest.raises(KeyError):
        scope_required(Forgotten(), "POST")
    assert scope_required(Forgotten(), "DELETE") is None  # no handler: 405 follows


def test_a_send_key_cannot_read_an_inbox_or_mint_a_token():
    sender = client_with_scopes(["send"])
    Recipient.objects.create(user_id="u_1")

    assert sender.get("/api/v1/users/u_1/notifications").status_code == 403
    assert sender.post("/api/v1/users/u_1/token").status_code == 403
    assert sender.get("/api/v1/users/u_1").status_code == 403


def test_a_recipient_token_still_reaches_its_own_inbox_and_preferences_only():
    recipient = Recipient.objects.create(user_id="u_1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue('u_1', recipient.id)}")

    assert client.get("/api/v1/users/u_1/notifications").status_code == 200
    assert client.patch("/api/v1/users/u_1/notification-preferences", {"language": "de"}, format="json").status_code == 200
    assert client.get("/api/v1/users/u_2/notifications").status_code == 404
    assert client.get("/api/v1/users/u_1").status_code == 403
    assert client.post("/api/v1/users/u_1/token").status_code == 403


class TestMigration:
    def forward(self):
        migration = importlib.import_module("notifier.migrations.0006_producer_scopes")
        migration.scopes_split(apps, None)

    def test_a_key_with_send_keeps_everything_send_reached(self):
        sender, _ = Producer.create_with_key("sender", ["send"])
        both, _ = Producer.create_with_key("both", ["send", "admin"])
        admin_only, _ = Producer.create_with_key("types", ["admin"])
        keyless, _ = Producer.create_with_key("admin-console", [])

        self.forward()

        assert Producer.objects.get(pk=sender.pk).scopes == SEND_BEFORE_SCOPES
        assert Producer.objects.get(pk=both.pk).scopes == [*SEND_BEFORE_SCOPES, "admin"]
        assert Producer.objects.get(pk=admin_only.pk).scopes == ["admin"]
        assert Producer.objects.get(pk=keyless.pk).scopes == []


class TestCreateProducer:
    def create(self, *args) -> list[str]:
        out = StringIO()
        call_command("createproducer", "billing", *args, stdout=out)
        return Producer.objects.get(name="billing").scopes

    def test_a_new_key_gets_send_alone_by_default(self):
        assert self.create() == ["send"]

    def test_a_new_key_gets_send_plus_each_scope_asked_for(self):
        assert self.create("--scope", "inbox:read", "--scope", "tokens") == ["send", "inbox:read", "tokens"]

    def test_an_unknown_scope_is_refused(self):
        with pytest.raises(CommandError, match="invalid choice"):
            self.create("--scope", "everything")
        assert not Producer.objects.filter(name="billing").exists()
