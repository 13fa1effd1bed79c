import time

import pytest

from notifier.models import Device, NotificationType, Recipient, SandboxMessage, Template
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due

pytestmark = pytest.mark.django_db


class TestUsers:
    def test_put_creates_then_updates_a_recipient(self, api):
        created = api.put("/api/v1/users/u_1", {"email": "a@example.com", "timezone": "Asia/Karachi"}, format="json")
        updated = api.put("/api/v1/users/u_1", {"phone": "+923001234567"}, format="json")

        assert created.status_code == 201 and updated.status_code == 200
        body = api.get("/api/v1/users/u_1").json()
        assert (body["email"], body["phone"], body["timezone"]) == ("a@example.com", "+923001234567", "Asia/Karachi")

    @pytest.mark.parametrize("field, value", [("email", "nope"), ("phone", "0300 1234567"),
                                              ("timezone", "Europe/Atlantis"), ("language", "English")])
    def test_bad_contact_fields_are_400_naming_the_field(self, api, field, value):
        response = api.put("/api/v1/users/u_1", {field: value}, format="json")

        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]
        assert not Recipient.objects.exists()

    def test_every_bad_contact_field_is_named_at_once(self, api):
        response = api.put("/api/v1/users/u_1", {"email": "bad", "phone": "555", "timezone": "X/Y"}, format="json")

        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {
            "email": ["Enter a valid email address."],
            "phone": ["Enter the number in E.164 form, e.g. +14155550100."],
            "timezone": ["'X/Y' is not an IANA time zone (e.g. Europe/Berlin)."],
        }
        assert not Recipient.objects.exists()

    def test_attributes_that_are_not_an_object_are_400_naming_the_field(self, api):
        response = api.put("/api/v1/users/u_1", {"attributes": "str", "language": "English"}, format="json")

        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {
            "attributes": ["Must be an object."], "language": ["'English' is not a language tag (e.g. en, pt-BR)."]}
        assert not Recipient.objects.exists()

    def test_attributes_that_are_an_object_are_stored(self, api):
        response = api.put("/api/v1/users/u_1", {"attributes": {"plan": "pro"}}, format="json")

        assert response.status_code == 201
        assert Recipient.objects.get().attributes == {"plan": "pro"}

    def test_an_unknown_user_is_404(self, api):
        assert api.get("/api/v1/users/nobody").status_code == 404


class TestDevices:
    def test_registering_a_token_is_idempotent(self, api):
        first = api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")
        second = api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")

        assert (first.status_code, second.status_code) == (201, 200)
        assert Device.objects.count() == 1

    def test_a_token_registered_by_another_user_moves_to_them(self, api):
        api.post("/api/v1/users/u_1/devices", {"platform": "android", "token": "shared"}, format="json")
        api.post("/api/v1/users/u_2/devices", {"platform": "android", "token": "shared"}, format="json")

        assert Device.objects.get(token="shared").recipient.user_id == "u_2"
        assert api.get("/api/v1/users/u_1/devices").json() == []

    def test_re_registering_reactivates_a_deactivated_token(self, api):
        api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")
        Device.objects.update(active=False, deactivated_reason="Unregistered")

        api.post("/api/v1/users/u_1/devices", {"platform": "ios", "token": "t1"}, format="json")

        device = Device.objects.get()
        assert device.active and device.deactivated_reason == ""

    def test_unregistering_deactivates_the_token(self, api):
        api.post("/api/v1/users/u_1/devices", {"platform": "web", "token": "t1"}, format="json")

        assert api.delete("/api/v1/users/u_1/devices/t1").status_code == 204
        assert not Device.objects.get().active
        assert api.delete("/api/v1/users/u_1/devices/t1").status_code == 404

    def test_a_bad_platform_is_400(self, api):
        response = api.post("/api/v1/users/u_1/devices", {"platform": "symbian", "token": "t"}, format="json")
        assert response.status_code == 400
        assert "platform" in response.json()["error"]["fields"]


class TestTypesAndTemplates:
    def test_an_admin_producer_creates_a_type_and_publishes_template_versions(self, admin_api):
        response = admin_api.post("/api/v1/notification-types", {
            "key": "password_reset", "category": "transactional", "default_priority": "high",
            "default_channels": ["email"], "variables": {"link": {"required": True}},
        }, format="json")
        assert response.status_code == 201

        template = {"type": "password_reset", "channel": "email", "language": "en",
                    "subject": "Reset", "body": "Go to {{ link }}"}
        v1 = admin_api.post("/api/v1/templates", template, format="json").json()
        v2 = admin_api.post("/api/v1/templates", {**template, "body": "Visit {{ link }}"}, format="json").json()

        assert (v1["version"], v2["version"]) == (1, 2)
        assert [t.active for t in Template.objects.order_by("version")] == [False, True]
        listed = admin_api.get("/api/v1/templates?type=password_reset").json()["templates"]
        assert [t["version"] for t in listed] == [2, 1]

    def test_a_template_with_bad_syntax_is_400_naming_the_field(self, admin_api, order_type):
        response = admin_api.post("/api/v1/templates", {
            "type": "order_shipped", "channel": "sms", "language": "en", "body": "Hi {% if %}",
        }, format="json")

        assert response.status_code == 400
        assert "body" in response.json()["error"]["fields"]

    def test_a_template_with_a_tag_left_open_is_400_naming_the_field_and_publishes_nothing(self, admin_api,
                                                                                            order_type):
        versions = Template.objects.count()

        response = admin_api.post("/api/v1/templates", {
            "type": "order_shipped", "channel": "in_app", "language": "en", "title": "Hi", "body": "{{ actor ",
        }, format="json")

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["body"]
        assert "'{{' on line 1 is not closed" in response.json()["error"]["fields"]["body"][0]
        assert Template.objects.count() == versions

    def test_a_type_with_an_unknown_channel_is_400(self, admin_api):
        response = admin_api.post("/api/v1/notification-types", {"key": "x", "default_channels": ["fax"]},
                                  format="json")
        assert response.status_code == 400
        assert "default_channels" in response.json()["error"]["fields"]

    @pytest.mark.parametrize("category", ["marketing", "system"])
    def test_only_a_transactional_type_can_be_critical(self, admin_api, category):
        response = admin_api.post("/api/v1/notification-types", {
            "key": "promo", "category": category, "critical": True, "default_channels": ["email"]}, format="json")

        assert response.status_code == 400
        assert "Only a transactional type can be critical" in str(response.json()["error"]["fields"]["critical"])
        assert not NotificationType.objects.filter(key="promo").exists()

    def test_a_critical_transactional_type_is_created(self, admin_api):
        response = admin_api.post("/api/v1/notification-types", {
            "key": "login_code", "critical": True, "default_channels": ["sms"]}, format="json")

        assert response.status_code == 201
        assert NotificationType.objects.get(key="login_code").critical


def test_the_sandbox_lists_what_would_have_been_sent(api, order_type, reachable_user):
    api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "5"}},
             format="json")
    route_due("high")
    for channel in ("push", "email", "sms"):
        deliver_due(channel, "high")

    messages = api.get("/api/v1/sandbox/messages?user_id=u_42&channel=email").json()["messages"]

    assert SandboxMessage.objects.count() == 4  # two devices, one email, one SMS
    [email] = messages
    assert email["to"] == "u_42@example.com"
    assert email["message"]["subject"] == "Order 5 shipped"
    assert "<p>Order <b>5</b> ships with UPS.</p>" in email["message"]["html_body"]  # inside the layout


def test_healthz_reports_database_and_broker(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_the_openapi_schema_is_served(api):
    response = api.get("/api/v1/schema")
    assert response.status_code == 200
    assert b"/api/v1/notifications" in response.content


def test_a_new_phone_number_clears_the_old_numbers_sms_opt_out(api):
    api.put("/api/v1/users/u_1", {"phone": "+14155550100"}, format="json")
    Recipient.objects.update(sms_opted_out_at="2026-01-01T00:00:00Z")

    api.put("/api/v1/users/u_1", {"phone": "+14155550100", "email": "a@example.com"}, format="json")
    assert Recipient.objects.get().sms_opted_out_at is not None  # same number: still opted out

    api.put("/api/v1/users/u_1", {"phone": "+14155550199"}, format="json")
    assert Recipient.objects.get().sms_opted_out_at is None


def test_createproducer_prints_the_new_key_last(db):
    from io import StringIO

    from django.core.management import call_command
    from rest_framework.test import APIClient

    out = StringIO()
    call_command("createproducer", "billing", "--scope", "admin", stdout=out)

    key = out.getvalue().strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/notification-types").status_code == 200


def test_healthz_gives_up_on_a_database_that_accepts_connections_but_never_answers(db, monkeypatch):
    import socket

    from django.db import connection
    from django.db.backends.postgresql.base import DatabaseWrapper

    from notifier import health

    assert connection.settings_dict["OPTIONS"]["connect_timeout"] == 5  # DB_CONNECT_TIMEOUT's default
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    params = {**connection.settings_dict, "PORT": silent.getsockname()[1], "OPTIONS": {"connect_timeout": 1}}
    monkeypatch.setattr(health, "connection", DatabaseWrapper(params, alias="silent"))

    started = time.monotonic()
    answer = health._database()

    assert time.monotonic() - started < 5
    assert answer.startswith("down")
    silent.close()
