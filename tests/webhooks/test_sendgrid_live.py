"""End to end over HTTP: an email goes out through the SendGrid adapter to the fake SendGrid, which then
posts its signed events to a running notifier (pytest-django's live server) as SendGrid would."""
import json

import pytest

from notifier.models import Delivery, DeliveryEvent, EmailSuppression
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.webhooks.sendgrid import EVENTS_PATH
from tests.conftest import make_reachable_user
from tests.fakes.sendgrid import FakeSendGrid, signing_key_new
from tests.pipeline.test_route import make_notification
from tests.webhooks.test_sendgrid_events import API_KEY, sendgrid_configure

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake():
    with FakeSendGrid(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def sendgrid_settings(settings, fake):
    return sendgrid_configure(settings, fake)


def test_sendgrids_signed_events_reach_the_delivery_history_over_http(live_server, sendgrid_settings, fake,
                                                                     order_type):
    url = live_server.url + EVENTS_PATH
    clicker, bouncer = make_reachable_user("u_1", devices=()), make_reachable_user("u_2", devices=())
    for user in (clicker, bouncer):
        make_notification(order_type, user, channels=["email"])
    route_due("high")
    deliver_due("email", "high")
    clicked, bounced = (Delivery.objects.get(target=f"{user.user_id}@example.com") for user in (clicker, bouncer))
    [clicked_mail], [bounced_mail] = fake.accepted_for(clicked.id), fake.accepted_for(bounced.id)

    status, body = fake.post_events(url, [fake.event(clicked_mail, "delivered"), fake.event(clicked_mail, "open"),
                                          fake.event(clicked_mail, "click", url="https://shop.example/o/42"),
                                          fake.event(bounced_mail, "bounce")])

    assert status == 200 and json.loads(body)["applied"] == 4
    clicked.refresh_from_db()
    bounced.refresh_from_db()
    assert clicked.status == "clicked" and bounced.status == "bounced"
    assert list(DeliveryEvent.objects.filter(delivery=clicked, source="sendgrid").order_by("id")
                .values_list("status", flat=True)) == ["delivered", "opened", "clicked"]
    assert EmailSuppression.objects.filter(address="u_2@example.com").exists()

    # the next email to the bounced address is decided at routing and never sent
    fake.clear()
    again = make_notification(order_type, bouncer, channels=["email"])
    route_due("high")
    deliver_due("email", "high")
    again.refresh_from_db()
    assert again.decisions[0]["reason"].startswith("email address suppressed: hard bounce on")
    assert fake.requests == []

    # and a post signed with another key is refused over HTTP too
    forged_status, _ = fake.post_events(url, [fake.event(clicked_mail, "bounce")], key=signing_key_new())
    assert forged_status == 403
    clicked.refresh_from_db()
    assert clicked.status == "clicked"
