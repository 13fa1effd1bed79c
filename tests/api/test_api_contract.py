"""What a new user of the API meets first: every path under /api/v1/ answers JSON (an index at /api/v1/,
the error envelope for an unknown path, with DEBUG on or off), Swagger UI whose assets are served from here,
and an OpenAPI schema that documents the 202 body and the error envelope of every 4xx an operation gives."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.staticfiles import finders
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.models import Notification, NotificationStatus

pytestmark = pytest.mark.django_db

ENVELOPE = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema():
    response = APIClient().get("/api/v1/schema?format=json")
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", path, operation


class TestTheSchema:
    def test_every_operation_documents_400_and_401_in_the_error_envelope(self, schema):
        for name, _, operation in operations(schema):
            for code in ("400", "401"):
                content = operation["responses"][code]["content"]
                assert content == {"application/json": {"schema": ENVELOPE}}, f"{name} {code}"

    def test_every_4xx_any_operation_documents_is_the_error_envelope(self, schema):
        for name, _, operation in operations(schema):
            for code, response in operation["responses"].items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == ENVELOPE, f"{name} {code}"
                    assert response["description"], f"{name} {code} says when"

    def test_scoped_operations_document_403_path_parameters_404_and_bodies_413_and_415(self, schema):
        for name, path, operation in operations(schema):
            codes = set(operation["responses"])
            if name != "GET /api/v1/schema":  # public
                assert "403" in codes, name
            if "{" in path:
                assert "404" in codes, name
            if "requestBody" in operation:
                assert {"413", "415"} <= codes, name

    def test_the_error_envelope_is_described_field_by_field(self, schema):
        components = schema["components"]["schemas"]
        detail = components["ErrorDetail"]

        assert components["Error"]["required"] == ["error"]
        assert set(detail["properties"]) == {"code", "message", "fields"}
        assert detail["required"] == ["code", "message"]
        assert detail["properties"]["fields"]["additionalProperties"]["items"]["type"] == "string"

    def test_posting_a_notification_documents_its_202_body_and_its_own_errors(self, schema):
        operation = schema["paths"]["/api/v1/notifications"]["post"]
        reference = operation["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
        components = schema["components"]["schemas"]
        accepted = components[reference.rsplit("/", 1)[1]]
        item = components[accepted["properties"]["notifications"]["items"]["$ref"].rsplit("/", 1)[1]]

        assert set(item["properties"]) == {"id", "user_id", "status"}
        assert {"409", "415", "422", "429"} <= set(operation["responses"])
        assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]

    def test_sandbox_messages_are_documented_as_the_object_the_view_answers(self, schema):
        reference = schema["paths"]["/api/v1/sandbox/messages"]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]["$ref"]
        listed = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]

        assert listed["required"] == ["messages"]
        assert listed["properties"]["messages"]["type"] == "array"

    def test_a_delivery_without_a_template_may_show_a_null_template_version(self, schema):
        assert schema["components"]["schemas"]["Delivery"]["properties"]["template_version"]["nullable"] is True

    def test_schedule_at_and_expires_at_say_that_no_offset_means_utc(self, schema):
        body = schema["components"]["schemas"]["NotificationRequest"]["properties"]

        assert "without a UTC offset it is UTC" in body["schedule_at"]["description"]
        assert "In the past (or absent): sent at once" in body["schedule_at"]["description"]
        assert "without a UTC offset it is UTC" in body["expires_at"]["description"]


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/nope/", "/api/", "/api/v2/notifications",
                                  "/api/v1/notifications/", "/api/v1/users/u_1/devices/t1/extra"])
def test_an_unknown_path_under_the_api_is_a_json_404(client, path, debug):
    with override_settings(DEBUG=debug):
        response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": f"No endpoint at {path}."}}


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
def test_an_http404_from_a_plain_view_under_the_api_is_a_json_404(client, debug, monkeypatch):
    from django.http import Http404

    from notifier.webhooks import twilio

    def not_found(*args, **kwargs):
        raise Http404("gone")

    monkeypatch.setattr(twilio, "signature_is_valid", not_found)
    with override_settings(DEBUG=debug):
        response = client.post("/api/v1/webhooks/twilio/status", {"MessageSid": "SM1"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


class TestTheIndex:
    def test_it_lists_every_resource_and_links_the_schema_and_docs_without_a_key(self, client):
        response = client.get("/api/v1/")

        assert response.status_code == 200
        body = response.json()
        assert body["schema"] == "http://testserver/api/v1/schema"
        assert body["docs"] == "http://testserver/api/v1/docs"
        resources = {resource["path"]: resource["methods"] for resource in body["resources"]}
        assert resources["/api/v1/notifications"] == ["POST"]
        assert resources["/api/v1/users/{user_id}/notification-preferences"] == ["GET", "PUT", "PATCH"]

    def test_it_lists_exactly_the_paths_the_schema_documents(self, client, schema):
        listed = {resource["path"] for resource in client.get("/api/v1/").json()["resources"]}

        assert listed == set(schema["paths"]) - {"/api/v1/schema"}

    def test_the_address_without_its_slash_leads_to_it(self, client):
        response = client.get("/api/v1")

        assert response.status_code == 302
        assert response["Location"] == "/api/v1/"


def test_the_docs_page_is_swagger_ui_over_the_schema_with_assets_served_from_here(client):
    response = client.get("/api/v1/docs")

    page = response.content.decode()
    assert response.status_code == 200
    assert "/api/v1/schema" in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert f"/static/drf_spectacular_sidecar/swagger-ui-dist/{asset}" in page  # no CDN
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{asset}"), asset


class TestNotificationRequests:
    BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}

    def post(self, api, body, **headers):
        return api.post("/api/v1/notifications", body, format="json", **headers)

    def test_an_idempotency_key_header_and_field_that_differ_are_a_400_naming_both(self, api, order_type,
                                                                                   reachable_user):
        response = self.post(api, {**self.BODY, "idempotency_key": "field-1"}, HTTP_IDEMPOTENCY_KEY="header-1")

        assert response.status_code == 400
        error = response.json()["error"]
        assert list(error["fields"]) == ["idempotency_key"]
        assert "idempotency_key" in error["message"] and "Idempotency-Key header" in error["message"]
        assert not Notification.objects.exists()

    def test_the_same_idempotency_key_in_header_and_field_is_accepted(self, api, order_type, reachable_user):
        response = self.post(api, {**self.BODY, "idempotency_key": "key-1"}, HTTP_IDEMPOTENCY_KEY="key-1")

        assert response.status_code == 202
        assert Notification.objects.get().idempotency_key == "key-1"

    def test_a_body_that_is_not_json_is_a_415_saying_what_to_send(self, api, order_type):
        response = api.post("/api/v1/notifications", "type=order_shipped", content_type="text/plain")

        assert response.status_code == 415
        assert response["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert error["message"] == 'Unsupported media type "text/plain" in request. Send Content-Type: application/json.'

    def test_a_schedule_at_in_the_past_is_sent_at_once(self, api, order_type, reachable_user):
        past = timezone.now() - timedelta(hours=1)

        response = self.post(api, {**self.BODY, "schedule_at": past.isoformat()})

        assert response.json()["notifications"][0]["status"] == "accepted"
        notification = Notification.objects.get()
        assert notification.status == NotificationStatus.ACCEPTED
        assert timezone.now() - notification.due_at < timedelta(minutes=1)  # due now, not an hour ago or later

    def test_a_schedule_at_and_expires_at_without_an_offset_are_utc(self, api, order_type, reachable_user):
        response = self.post(api, {**self.BODY, "schedule_at": "2099-01-02T03:04:05",
                                   "expires_at": "2099-01-03T03:04:05"})

        assert response.json()["notifications"][0]["status"] == "scheduled"
        notification = Notification.objects.get()
        assert notification.schedule_at == datetime(2099, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)
        assert notification.due_at == notification.schedule_at
        assert notification.expires_at == datetime(2099, 1, 3, 3, 4, 5, tzinfo=dt_timezone.utc)

    def test_an_offset_is_honoured(self, api, order_type, reachable_user):
        self.post(api, {**self.BODY, "schedule_at": "2099-01-02T03:04:05+02:00"})

        assert Notification.objects.get().schedule_at == datetime(2099, 1, 2, 1, 4, 5, tzinfo=dt_timezone.utc)
