"""GET /api/v1/sandbox/messages shows a producer what the sandbox recorded for its own notifications only:
subjects, bodies and addresses of another producer's messages are not its to read."""
import importlib

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from notifier.admin_tools import template_send_test
from notifier.models import SandboxMessage, Template
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db


def producer_client(name) -> APIClient:
    _, key = make_producer(name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def send_and_deliver(client, order_id) -> str:
    response = client.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                     "data": {"order_id": order_id}}, format="json")
    route_due("high")
    for channel in ("push", "email", "sms"):
        deliver_due(channel, "high")
    return response.json()["notifications"][0]["id"]


def listed(client, **query) -> list[dict]:
    response = client.get("/api/v1/sandbox/messages", query)
    assert response.status_code == 200
    return response.json()["messages"]


@pytest.fixture
def shop_and_billing(order_type, reachable_user):
    shop, billing = producer_client("shop"), producer_client("billing")
    return shop, send_and_deliver(shop, "1"), billing


def test_another_producers_messages_are_not_listed(shop_and_billing):
    shop, shop_notification, billing = shop_and_billing

    assert len(listed(shop)) == 4  # two devices, one email, one SMS
    assert listed(billing) == []
    assert listed(billing, user_id="u_42") == []
    assert listed(billing, user_id="u_42", channel="email") == []
    assert listed(billing, notification_id=shop_notification) == []


def test_each_producer_sees_its_own_messages_to_a_shared_user(shop_and_billing):
    shop, shop_notification, billing = shop_and_billing
    billing_notification = send_and_deliver(billing, "2")

    assert {m["notification_id"] for m in listed(shop, user_id="u_42")} == {shop_notification}
    assert {m["notification_id"] for m in listed(billing, user_id="u_42")} == {billing_notification}
    [email] = listed(billing, channel="email")
    assert email["message"]["subject"] == "Order 2 shipped"


def test_admin_test_sends_are_listed_to_no_producer(shop_and_billing):
    shop, _, billing = shop_and_billing
    template_send_test(Template.objects.get(channel="email"), "u_42", {"order_id": "3"})
    deliver_due("email", "high")

    assert SandboxMessage.objects.count() == 5
    assert "Order 3 shipped" not in str(listed(shop) + listed(billing))


GONE_DELIVERY_ID = 2 ** 40


def test_the_migration_gives_messages_recorded_before_the_producer_of_their_notification(shop_and_billing):
    shop, _, billing = shop_and_billing
    SandboxMessage.objects.update(producer=None)  # as rows recorded before the column existed
    # An id no delivery of the suite reaches (sequences are not reset between tests: 999 once collided).
    SandboxMessage.objects.create(channel="sms", user_id="u_9", to="+14155550199", delivery_id=GONE_DELIVERY_ID,
                                  notification_id="00000000-0000-0000-0000-000000000009", message={})

    importlib.import_module("notifier.migrations.0007_sandbox_message_producer").producers_fill(apps, None)

    assert len(listed(shop)) == 4 and listed(billing) == []
    assert SandboxMessage.objects.get(delivery_id=GONE_DELIVERY_ID).producer is None  # its notification is gone: no one's
