"""A request body is at most NOTIFIER_MAX_REQUEST_BYTES (413 before it is read) and a notification's
`data` at most NOTIFIER_MAX_DATA_BYTES (400 naming it): data is copied into every notification, inbox
item and sandbox message of the request."""
import orjson
import pytest
from django.test import override_settings

from notifier.models import Notification

pytestmark = pytest.mark.django_db

ORDER = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}


def test_the_defaults_are_one_megabyte_of_body_and_64_kilobytes_of_data(settings):
    assert (settings.NOTIFIER_MAX_REQUEST_BYTES, settings.NOTIFIER_MAX_DATA_BYTES) == (1024 * 1024, 64 * 1024)


def test_a_body_over_the_limit_is_a_413_in_the_error_shape(api, order_type):
    body = orjson.dumps({**ORDER, "data": {"order_id": "1", "blob": "x" * (1024 * 1024)}})

    response = api.generic("POST", "/api/v1/notifications", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {"error": {"code": "request_too_large",
                                         "message": "The request body is larger than 1048576 bytes."}}
    assert not Notification.objects.exists()


@override_settings(NOTIFIER_MAX_REQUEST_BYTES=200)
def test_a_body_at_the_limit_is_read(api, order_type):
    body = orjson.dumps(ORDER)
    body += b" " * (200 - len(body))

    assert api.generic("POST", "/api/v1/notifications", body, content_type="application/json").status_code == 202
    assert api.generic("POST", "/api/v1/notifications", body + b" ",
                       content_type="application/json").status_code == 413


@override_settings(NOTIFIER_MAX_DATA_BYTES=100)
def test_data_over_its_limit_is_a_400_naming_data(api, order_type):
    big = {"order_id": "1", "note": "x" * 100}

    response = api.post("/api/v1/notifications", {**ORDER, "data": big}, format="json")
    per_recipient = api.post("/api/v1/notifications", {"type": "order_shipped", "data": {"order_id": "1"},
                                                       "recipients": [{"user_id": "a"}, {"user_id": "b", "data": big}]},
                             format="json")

    assert response.status_code == per_recipient.status_code == 400
    assert response.json()["error"]["fields"]["data"] == [f"At most 100 bytes of JSON; this is {len(orjson.dumps(big))}."]
    assert list(per_recipient.json()["error"]["fields"]) == ["recipients[1].data"]
    assert not Notification.objects.exists()


def test_data_copied_to_many_recipients_is_bounded_by_what_one_request_may_store(api, order_type):
    # 60 KB of data is under the data limit, and the body (data once, 100 short entries) under the body
    # limit; stored for each of 100 recipients it would be 6 MB of rows.
    data = {"order_id": "1", "note": "x" * (60 * 1024)}
    recipients = [{"user_id": f"u_{i}"} for i in range(100)]

    response = api.post("/api/v1/notifications", {"type": "order_shipped", "data": data, "recipients": recipients},
                        format="json")
    few = api.post("/api/v1/notifications", {"type": "order_shipped", "data": data, "recipients": recipients[:10]},
                   format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["data"]
    assert "100 recipients" in response.json()["error"]["fields"]["data"][0]
    assert few.status_code == 202
    assert Notification.objects.count() == 10
