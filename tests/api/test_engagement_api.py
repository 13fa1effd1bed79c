"""Push and in-app engagement: the app reports opens, clicks and dismissals at
POST /api/v1/users/{user_id}/notifications/{id}/events, and reading an inbox item counts as opening its
in-app delivery. Each is recorded once per delivery through the status machine."""
import uuid

import pytest
from rest_framework.test import APIClient

from notifier.api.auth import recipient_token_issue
from notifier.models import Delivery, DeliveryEvent, InboxItem
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_order_type, make_producer, make_reachable_user
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


def delivered(notification_type, recipient, count=1) -> list:
    """Notifications routed and sent (through the sandbox) on push and in-app."""
    notifications = [make_notification(notification_type, recipient) for _ in range(count)]
    route_due("high")
    deliver_due("push", "high")
    deliver_due("in_app", "high")
    return notifications


@pytest.fixture
def app_type(db):
    return make_order_type("friend_request", channels=("push", "in_app"))


@pytest.fixture
def user(db):
    return make_reachable_user("u_42")


@pytest.fixture
def notification(app_type, user):
    return delivered(app_type, user)[0]


@pytest.fixture
def app(user):
    """The user's app, with their recipient token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue(user.user_id, user.id)}")
    return client


def events_path(notification, user_id="u_42") -> str:
    return f"/api/v1/users/{user_id}/notifications/{notification.id}/events"


def statuses(notification) -> dict:
    return {(d.channel, d.target): d.status for d in Delivery.objects.filter(notification=notification)}


def test_an_open_on_push_sets_the_push_deliveries_opened_and_leaves_in_app_alone(app, notification):
    response = app.post(events_path(notification), {"event": "opened", "channel": "push"}, format="json")

    assert response.status_code == 200
    assert response.json()["event"] == "opened"
    assert {(d["channel"], d["status"]) for d in response.json()["deliveries"]} == {("push", "opened")}
    assert statuses(notification) == {("push", "ios-token-1"): "opened", ("push", "android-token-1"): "opened",
                                      ("in_app", "u_42"): "delivered"}
    events = DeliveryEvent.objects.filter(delivery__notification=notification, status="opened")
    assert events.count() == 2 and {e.source for e in events} == {"app"}


def test_an_event_without_a_channel_applies_to_push_and_in_app(app, notification):
    response = app.post(events_path(notification), {"event": "opened"}, format="json")

    assert response.status_code == 200
    assert set(statuses(notification).values()) == {"opened"}


def test_a_click_implies_the_open_and_is_recorded_once(app, notification):
    first = app.post(events_path(notification), {"event": "clicked", "channel": "in_app"}, format="json")
    again = app.post(events_path(notification), {"event": "clicked", "channel": "in_app"}, format="json")

    assert first.status_code == again.status_code == 200
    delivery = Delivery.objects.get(notification=notification, channel="in_app")
    assert delivery.status == "clicked" and delivery.opened_at and delivery.clicked_at
    assert DeliveryEvent.objects.filter(delivery=delivery, status="clicked").count() == 1


def test_dismissing_archives_the_inbox_item_and_changes_no_status(app, notification):
    response = app.post(events_path(notification), {"event": "dismissed"}, format="json")

    assert response.status_code == 200
    assert InboxItem.objects.get(notification=notification).archived_at is not None
    assert set(statuses(notification).values()) == {"delivered"}


def test_dismissing_a_push_leaves_the_inbox_item_where_it_is(app, notification):
    app.post(events_path(notification), {"event": "dismissed", "channel": "push"}, format="json")

    assert InboxItem.objects.get(notification=notification).archived_at is None
    assert set(statuses(notification).values()) == {"delivered"}


def test_a_producer_key_with_the_inbox_scope_may_report_too(notification):
    _, key = make_producer("mobile-backend", ["inbox:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.post(events_path(notification), {"event": "opened", "channel": "in_app"}, format="json")

    assert response.status_code == 200
    assert Delivery.objects.get(notification=notification, channel="in_app").status == "opened"


@pytest.mark.parametrize("body, field", [
    ({"event": "liked"}, "event"),
    ({}, "event"),
    ({"event": "opened", "channel": "email"}, "channel"),
    ({"event": "opened", "device": "x"}, "device"),
])
def test_bad_input_is_a_400_naming_the_field(app, notification, body, field):
    response = app.post(events_path(notification), body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert set(statuses(notification).values()) == {"delivered"}


def test_another_users_notification_is_404(app, app_type, notification):
    stranger = make_reachable_user("u_7", devices=(("ios", "ios-token-7"),))
    theirs = delivered(app_type, stranger)[0]

    assert app.post(events_path(theirs), {"event": "opened"}, format="json").status_code == 404
    assert app.post(events_path(theirs, "u_7"), {"event": "opened"}, format="json").status_code == 404
    assert app.post(events_path(notification).replace(str(notification.id), str(uuid.uuid4())),
                    {"event": "opened"}, format="json").status_code == 404
    assert app.post("/api/v1/users/u_42/notifications/not-a-uuid/events", {"event": "opened"},
                    format="json").status_code == 404
    assert set(statuses(theirs).values()) == {"delivered"}


def test_no_credentials_is_401(notification):
    assert APIClient().post(events_path(notification), {"event": "opened"}, format="json").status_code == 401


# The recipient, the UPDATE of the items, the escalations to cancel (none), the in-app deliveries' ids, the
# status call (lock the rows, read their events, UPDATE them, INSERT the events) and the badge.
MARK_ALL_READ_QUERIES = 9


# --- reading the inbox counts as opened ----------------------------------------------------------------

def test_reading_an_inbox_item_opens_its_in_app_delivery(app, notification):
    response = app.patch(f"/api/v1/users/u_42/notifications/{notification.id}", {"read": True}, format="json")

    assert response.status_code == 200
    delivery = Delivery.objects.get(notification=notification, channel="in_app")
    assert delivery.status == "opened" and delivery.opened_at
    [event] = DeliveryEvent.objects.filter(delivery=delivery, status="opened")
    assert event.source == "app" and event.payload == {"via": "inbox read"}
    assert Delivery.objects.filter(notification=notification, channel="push", status="delivered").count() == 2


def test_reading_again_records_nothing_more(app, notification):
    for read in (True, False, True):
        app.patch(f"/api/v1/users/u_42/notifications/{notification.id}", {"read": read}, format="json")

    assert DeliveryEvent.objects.filter(delivery__notification=notification, status="opened").count() == 1


def test_mark_all_read_opens_every_in_app_delivery_it_read(app, app_type, user):
    notifications = delivered(app_type, user, count=3)
    already = notifications[0]
    app.patch(f"/api/v1/users/u_42/notifications/{already.id}", {"read": True}, format="json")

    response = app.post("/api/v1/users/u_42/notifications/mark-all-read")

    assert response.json()["marked_read"] == 2
    assert set(Delivery.objects.filter(channel="in_app").values_list("status", flat=True)) == {"opened"}
    assert DeliveryEvent.objects.filter(delivery__channel="in_app", status="opened").count() == 3


@pytest.mark.parametrize("count", [2, 20])
def test_mark_all_read_costs_the_same_queries_for_2_or_20_items(app, app_type, user, count,
                                                                django_assert_num_queries):
    delivered(app_type, user, count=count)

    with django_assert_num_queries(MARK_ALL_READ_QUERIES):
        response = app.post("/api/v1/users/u_42/notifications/mark-all-read")

    assert response.json()["marked_read"] == count
    assert Delivery.objects.filter(channel="in_app", status="opened").count() == count
