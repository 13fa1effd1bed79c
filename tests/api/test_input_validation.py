"""Every input the API reads is checked where it enters (notifier/validation.py): a NUL or another
control character, JSON nested too deep, a malformed id or cursor is a 400 naming the field, never a 500
from the database or from Python's recursion limit."""
import base64
import json

import pytest
from django.utils import timezone

from notifier.models import InboxItem, Notification, Producer, Recipient

pytestmark = pytest.mark.django_db

ORDER = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}
TEMPLATE = {"type": "order_shipped", "channel": "sms", "language": "en", "body": "Order {{ order_id }}"}


def nested(depth: int):
    """{"a": {"a": … {"a": "deep"}}}, `depth` objects deep."""
    value = "deep"
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_list(depth: int):
    """[[… []]], `depth` arrays deep."""
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def cursor(*values) -> str:
    """An inbox cursor as the API encodes one (notifier/inbox.py, cursor_encode), with any values."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


# (method, path, body, headers, the field the 400 must name)
BAD_INPUTS = {
    "NUL in user_id": ("post", "/api/v1/notifications", {**ORDER, "user_id": "u\x0042"}, {}, "user_id"),
    "NUL in recipients[0].user_id": (
        "post", "/api/v1/notifications", {"type": "order_shipped", "recipients": [{"user_id": "u\x00"}],
                                          "data": {"order_id": "1"}}, {}, "recipients[0].user_id"),
    "NUL in type": ("post", "/api/v1/notifications", {**ORDER, "type": "order\x00shipped"}, {}, "type"),
    "NUL in a data key": ("post", "/api/v1/notifications", {**ORDER, "data": {"order_id": "1", "k\x00": "v"}}, {},
                          "data.k\x00"),
    "NUL in a data value": ("post", "/api/v1/notifications", {**ORDER, "data": {"order_id": "1\x00"}}, {},
                            "data.order_id"),
    "NUL in a recipient's data": (
        "post", "/api/v1/notifications", {"type": "order_shipped", "recipients": [{"user_id": "u_1",
                                                                                   "data": {"order_id": ["\x00"]}}]},
        {}, "recipients[0].data.order_id[0]"),
    "another control character in data": ("post", "/api/v1/notifications",
                                          {**ORDER, "data": {"order_id": "1\x1b[2J"}}, {}, "data.order_id"),
    "data nested 300 levels": ("post", "/api/v1/notifications",
                               {**ORDER, "data": {"order_id": "1", "x": nested(300)}}, {}, "data.x"),
    "a list in data nested 300 levels": ("post", "/api/v1/notifications",
                                         {**ORDER, "data": {"order_id": "1", "x": nested_list(300)}}, {}, "data.x"),
    "NUL in the Idempotency-Key header": ("post", "/api/v1/notifications", ORDER,
                                          {"HTTP_IDEMPOTENCY_KEY": "k\x00"}, "idempotency_key"),
    "NUL in an attributes key": ("put", "/api/v1/users/u_1", {"attributes": {"pl\x00n": "pro"}}, {},
                                 "attributes.pl\x00n"),
    "NUL in an attributes value": ("put", "/api/v1/users/u_1", {"attributes": {"plan": "pro\x00"}}, {},
                                   "attributes.plan"),
    "attributes nested 300 levels": ("put", "/api/v1/users/u_1", {"attributes": nested(300)}, {}, "attributes"),
    "NUL in a path segment (user)": ("get", "/api/v1/users/u%00", None, {}, "user_id"),
    "NUL in a path segment (PUT user)": ("put", "/api/v1/users/u%00", {"email": "a@example.com"}, {}, "user_id"),
    "NUL in a path segment (token)": ("post", "/api/v1/users/u%00/token", None, {}, "user_id"),
    "NUL in a path segment (device)": ("delete", "/api/v1/users/u_42/devices/t%00", None, {}, "token"),
    "NUL in a path segment (notification)": ("get", "/api/v1/notifications/%00", None, {}, "notification_id"),
    "NUL in a path segment (inbox item)": ("patch", "/api/v1/users/u_42/notifications/%00", {"read": True}, {},
                                           "notification_id"),
    "NUL in a query parameter (templates)": ("get", "/api/v1/templates?type=%00", None, {}, "type"),
    "NUL in a query parameter (sandbox)": ("get", "/api/v1/sandbox/messages?channel=%00", None, {}, "channel"),
    "NUL in a query parameter (inbox)": ("get", "/api/v1/users/u_42/notifications?cursor=%00", None, {}, "cursor"),
    "sandbox notification_id not a UUID": ("get", "/api/v1/sandbox/messages?notification_id=42", None, {},
                                           "notification_id"),
    "sandbox user_id outside the alphabet": ("get", "/api/v1/sandbox/messages?user_id=a%20b", None, {},
                                             "user_id"),
    "inbox cursor with an out-of-range UTC offset": (
        "get", f"/api/v1/users/u_42/notifications?cursor={cursor('2026-01-01T00:00:00+20:00', 1)}", None, {},
        "cursor"),
    "inbox cursor with an id beyond bigint": (
        "get", f"/api/v1/users/u_42/notifications?cursor={cursor('2026-01-01T00:00:00+00:00', 2 ** 70)}", None, {},
        "cursor"),
    "inbox cursor without a time zone": (
        "get", f"/api/v1/users/u_42/notifications?cursor={cursor('2026-01-01T00:00:00', 1)}", None, {}, "cursor"),
    "POST templates without language": ("post", "/api/v1/templates",
                                        {k: v for k, v in TEMPLATE.items() if k != "language"}, {}, "language"),
    "NUL in a template body": ("post", "/api/v1/templates", {**TEMPLATE, "body": "Order\x00"}, {}, "body"),
    "NUL in a type's variables": ("post", "/api/v1/notification-types",
                                  {"key": "x", "default_channels": ["sms"], "variables": {"v\x00": {}}}, {},
                                  "variables.v\x00"),
    "a type's variables nested 300 levels": ("post", "/api/v1/notification-types",
                                             {"key": "x", "default_channels": ["sms"],
                                              "variables": {"v": {"example": nested(300)}}}, {}, "variables.v"),
    "a language tag longer than its column (preferences)": (
        "put", "/api/v1/users/u_42/notification-preferences", {"language": "mgo-BVO-BNlqT-v03t"}, {}, "language"),
    "a language tag longer than its column (recipients)": (
        "post", "/api/v1/notifications", {"type": "order_shipped", "data": {"order_id": "1"},
                                          "recipients": [{"user_id": "u_1", "language": "en-GB-oxendict-x1"}]},
        {}, "recipients[0].language"),
    "NUL in a preference type key": ("put", "/api/v1/users/u_42/notification-preferences",
                                     {"types": {"order\x00": {"sms": False}}}, {}, "types.order\x00"),
}


@pytest.mark.parametrize("method, path, body, headers, field", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_400_naming_the_field(admin_api, order_type, reachable_user, method, path, body, headers,
                                             field):
    notification = Notification.objects.create(producer=Producer.objects.get(name="ops"), type=order_type,
                                               recipient=reachable_user, priority="high", due_at=timezone.now())
    InboxItem.objects.create(recipient=reachable_user, notification=notification, title="Order shipped")
    notifications, recipients = Notification.objects.count(), Recipient.objects.count()

    response = getattr(admin_api, method)(path, body, format="json", **headers)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    named = [name for name in error["fields"] if name == field or name.startswith((field + ".", field + "["))]
    assert named, error
    assert (Notification.objects.count(), Recipient.objects.count()) == (notifications, recipients)


def test_data_nested_to_the_limit_and_text_with_newlines_and_tabs_are_accepted(api, order_type, reachable_user):
    # The body is level 1 and data level 2: data may hold 30 levels more (MAX_JSON_DEPTH = 32).
    body = {**ORDER, "data": {"order_id": "1\n\t2\r", "x": nested(30)}}

    assert api.post("/api/v1/notifications", body, format="json").status_code == 202
    assert api.post("/api/v1/notifications", {**body, "data": {"order_id": "1", "x": nested(31)}},
                    format="json").json()["error"]["fields"] == {
        "data" + ".x" + ".a" * 30: ["Nested more than 32 levels deep."]}
