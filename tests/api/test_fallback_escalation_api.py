"""fallback_channels and escalate on POST /api/v1/notifications, default_fallback_channels on a type."""
import pytest
from rest_framework.test import APIClient

from notifier.models import Notification
from tests.api.test_openapi_schema import request_schema, resolve

pytestmark = pytest.mark.django_db

ESCALATE = {"channels": ["email"], "if_unread_after_seconds": 600}


def post(api, **fields):
    body = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}, **fields}
    return api.post("/api/v1/notifications", body, format="json")


def test_fallback_channels_and_an_escalation_are_stored_and_shown(api, order_type, reachable_user):
    response = post(api, channels=["push", "in_app"], fallback_channels=["sms"], escalate=ESCALATE)

    assert response.status_code == 202, response.json()
    notification = Notification.objects.get(id=response.json()["notifications"][0]["id"])
    assert notification.fallback_channels == ["sms"]
    assert notification.escalation == ESCALATE
    shown = api.get(f"/api/v1/notifications/{notification.id}").json()
    assert shown["fallback_channels"] == ["sms"] and shown["escalate"] == ESCALATE
    assert shown["escalate_at"] is None  # set when routed


def test_without_fallback_channels_the_types_default_applies_when_routed(api, order_type, reachable_user):
    response = post(api, channels=["push"])

    notification = Notification.objects.get(id=response.json()["notifications"][0]["id"])
    assert notification.fallback_channels is None and notification.escalation is None


@pytest.mark.parametrize("fields, path, problem", [
    ({"fallback_channels": ["fax"]}, "fallback_channels[0]", "not a valid choice"),
    ({"fallback_channels": ["sms", "sms"]}, "fallback_channels", "Name each channel once."),
    ({"channels": ["push"], "fallback_channels": ["push"]}, "fallback_channels", "'push' is one of the notification's channels"),
    ({"fallback_channels": ["sms"]}, "fallback_channels", "'sms' is one of the notification's channels"),  # the type's
    ({"fallback_channels": "sms"}, "fallback_channels", "Expected a list"),
    ({"escalate": {"channels": ["email"], "if_unread_after_seconds": 0}}, "escalate.if_unread_after_seconds",
     "greater than or equal to 1"),
    ({"escalate": {"channels": ["email"], "if_unread_after_seconds": 604801}}, "escalate.if_unread_after_seconds",
     "less than or equal to 604800"),
    ({"escalate": {"channels": ["email"], "if_unread_after_seconds": "600"}}, "escalate.if_unread_after_seconds",
     "Must be an integer number of seconds."),
    ({"escalate": {"channels": ["fax"], "if_unread_after_seconds": 600}}, "escalate.channels[0]", "not a valid choice"),
    ({"escalate": {"channels": [], "if_unread_after_seconds": 600}}, "escalate.channels", "may not be empty"),
    ({"escalate": {"channels": ["email"]}}, "escalate.if_unread_after_seconds", "required"),
    ({"escalate": {**ESCALATE, "after": 1}}, "escalate.after", "Unknown field."),
    ({"escalate": "email"}, "escalate", "Must be an object"),
    ({"channels": ["push", "email"], "escalate": ESCALATE}, "escalate", "Needs in_app"),
    ({"channels": ["in_app", "email"], "escalate": ESCALATE}, "escalate.channels", "'email' is one of the notification's channels"),
    ({"channels": ["in_app"], "fallback_channels": ["email"], "escalate": ESCALATE}, "escalate.channels",
     "'email' is a fallback channel too"),
])
def test_bad_fallback_or_escalation_input_is_a_400_naming_the_field(api, order_type, reachable_user, fields, path,
                                                                     problem):
    response = post(api, **fields)

    assert response.status_code == 400
    errors = response.json()["error"]["fields"]
    assert path in errors, errors
    assert any(problem in message for message in errors[path]), errors[path]
    assert not Notification.objects.exists()


def test_a_recipients_own_channels_are_checked_too(api, order_type, reachable_user):
    response = api.post("/api/v1/notifications", {
        "type": "order_shipped", "data": {"order_id": "1"}, "fallback_channels": ["sms"],
        "channels": ["push"], "recipients": [{"user_id": "u_42"}, {"user_id": "u_43", "channels": ["sms"]}],
    }, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["fallback_channels"] == [
        "'sms' is one of the notification's channels (recipients[1]); a fallback is another channel."]


def test_a_types_default_fallback_channels_are_validated_like_its_channels(admin_api):
    base = {"key": "alert", "default_channels": ["push"], "variables": {}}

    unknown = admin_api.post("/api/v1/notification-types", {**base, "default_fallback_channels": ["fax"]},
                             format="json")
    repeated = admin_api.post("/api/v1/notification-types", {**base, "default_fallback_channels": ["push"]},
                              format="json")
    good = admin_api.post("/api/v1/notification-types", {**base, "default_fallback_channels": ["sms", "email"]},
                          format="json")

    assert "Unknown channel 'fax'" in unknown.json()["error"]["fields"]["default_fallback_channels"][0]
    assert "'push' is one of default_channels" in repeated.json()["error"]["fields"]["default_fallback_channels"][0]
    assert good.status_code == 201 and good.json()["default_fallback_channels"] == ["sms", "email"]


def test_the_schema_describes_fallback_channels_and_escalate():
    schema = APIClient().get("/api/v1/schema?format=json").json()
    body = request_schema(schema, "/api/v1/notifications", "post")

    assert body["properties"]["fallback_channels"]["type"] == "array"
    escalate = resolve(schema, body["properties"]["escalate"])
    assert set(escalate["properties"]) == {"channels", "if_unread_after_seconds"}
    assert escalate["properties"]["if_unread_after_seconds"]["maximum"] == 604800
    assert escalate["required"] == ["channels", "if_unread_after_seconds"]
