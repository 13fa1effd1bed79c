import pytest

from notifier.models import Recipient
from notifier.pipeline.route import route_due
from tests.api.test_recipient_tokens import recipient_client
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

URL = "/api/v1/users/{}/notification-preferences"
DOCUMENT = {
    "channels": {"push": True, "email": True, "sms": False, "in_app": True},
    "types": {"order_shipped": {"email": False}, "marketing": {"push": False}},
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Asia/Karachi"},
    "language": "ur",
    "marketing_opt_in": True,
    "digest": "daily",
}


def test_put_stores_the_document_and_get_returns_it(api, order_type):
    put = api.put(URL.format("u_1"), DOCUMENT, format="json")

    assert put.status_code == 200, put.content
    assert api.get(URL.format("u_1")).json() == DOCUMENT
    recipient = Recipient.objects.get(user_id="u_1")
    assert (recipient.timezone, recipient.language) == ("Asia/Karachi", "ur")


def test_a_user_who_set_nothing_gets_the_defaults(api):
    Recipient.objects.create(user_id="u_1")

    assert api.get(URL.format("u_1")).json() == {
        "channels": {"push": True, "email": True, "sms": True, "in_app": True}, "types": {}, "quiet_hours": None,
        "language": "en", "marketing_opt_in": False, "digest": "realtime",
    }


def test_patch_changes_only_what_it_gives_and_merges_maps(api, order_type):
    api.put(URL.format("u_1"), DOCUMENT, format="json")

    response = api.patch(URL.format("u_1"), {"channels": {"sms": True}, "types": {"order_shipped": {"push": False}},
                                             "digest": "hourly"}, format="json")

    body = response.json()
    assert body["channels"] == {"push": True, "email": True, "sms": True, "in_app": True}
    assert body["types"] == {"order_shipped": {"email": False, "push": False}, "marketing": {"push": False}}
    assert (body["digest"], body["marketing_opt_in"], body["quiet_hours"]) == ("hourly", True, DOCUMENT["quiet_hours"])


def test_put_returns_what_it_leaves_out_to_the_default(api, order_type):
    api.put(URL.format("u_1"), DOCUMENT, format="json")

    body = api.put(URL.format("u_1"), {"channels": {"email": False}}, format="json").json()

    assert body["channels"]["sms"] is True and body["channels"]["email"] is False
    assert (body["types"], body["quiet_hours"], body["marketing_opt_in"]) == ({}, None, False)


def test_a_change_applies_to_the_very_next_notification(api, order_type, reachable_user):
    first = make_notification(order_type, reachable_user, channels=["sms"])
    route_due("high")
    api.patch(URL.format("u_42"), {"channels": {"sms": False}}, format="json")
    second = make_notification(order_type, reachable_user, channels=["sms"])
    route_due("high")

    assert first.deliveries.count() == 1
    assert second.deliveries.count() == 0
    second.refresh_from_db()
    assert second.decisions == [{"channel": "sms", "decision": "suppressed", "reason": "channel disabled by user"}]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"channels": {"pigeon": True}}, "channels.pigeon"),
        ({"channels": {"sms": "no"}}, "channels.sms"),
        ({"channels": ["sms"]}, "channels"),
        ({"types": {"no_such_type": {"email": False}}}, "types.no_such_type"),
        ({"types": {"order_shipped": {"fax": False}}}, "types.order_shipped.fax"),
        ({"types": {"marketing": True}}, "types.marketing"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "7am"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}, "quiet_hours.timezone"),
        ({"quiet_hours": "night"}, "quiet_hours"),
        ({"language": "English"}, "language"),
        ({"marketing_opt_in": "yes"}, "marketing_opt_in"),
        ({"digest": "weekly"}, "digest"),
        ({"colour": "blue"}, "colour"),
    ],
)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_bad_input_is_400_naming_the_field_and_changes_nothing(api, order_type, method, body, field):
    Recipient.objects.create(user_id="u_1")

    response = getattr(api, method)(URL.format("u_1"), body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert api.get(URL.format("u_1")).json()["channels"]["sms"] is True


def test_a_users_own_app_reads_and_changes_only_its_own_preferences(api, order_type):
    Recipient.objects.create(user_id="u_2")
    app = recipient_client(api, "u_1")

    assert app.patch(URL.format("u_1"), {"channels": {"push": False}}, format="json").status_code == 200
    assert app.get(URL.format("u_1")).json()["channels"]["push"] is False
    assert app.get(URL.format("u_2")).status_code == 404
    assert app.patch(URL.format("u_2"), {"channels": {"push": False}}, format="json").status_code == 404


def test_an_unknown_user_is_404(api):
    assert api.get(URL.format("nobody")).status_code == 404


def test_a_held_delivery_shows_why_and_when_it_is_released(api, order_type, reachable_user):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    local = timezone.now().astimezone(ZoneInfo("Asia/Karachi"))
    start, end = (local - timedelta(hours=1)).strftime("%H:%M"), (local + timedelta(hours=2)).strftime("%H:%M")
    api.patch(URL.format("u_42"), {"quiet_hours": {"start": start, "end": end, "timezone": "Asia/Karachi"}},
              format="json")
    notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "1"}, "priority": "low",
                                                         "channels": ["email"]},
                               format="json").json()["notifications"][0]["id"]
    route_due("low")

    body = api.get(f"/api/v1/notifications/{notification_id}").json()

    [delivery] = body["deliveries"]
    assert delivery["status"] == "held"
    assert delivery["status_reason"] == f"held for quiet hours until {end} Asia/Karachi"
    assert delivery["release_at"] is not None
    assert body["decisions"][0]["decision"] == "held"
