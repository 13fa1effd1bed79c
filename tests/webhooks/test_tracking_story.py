"""Issue 12's "done means", told as one story through the real parts: emails through the SendGrid adapter to
the fake SendGrid (which signs its Event Webhook posts with a real ECDSA key), an SMS through the Twilio
adapter to the fake Twilio (whose callbacks are signed as Twilio signs them), a push whose token the
provider calls gone, a one-click unsubscribe. Each shows its whole history through the API and admin; the
producer receives signed status events and verifies them with README's snippet; /metrics counts them."""
import re
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from twilio.request_validator import RequestValidator

from notifier.models import Delivery, Device, EmailSuppression, Notification, Unsubscription
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.producer_webhooks import producer_webhooks_send
from notifier.webhooks.sendgrid import EVENTS_PATH
from notifier.webhooks.twilio import STATUS_PATH
from tests.conftest import make_order_type
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.producer_webhooks.conftest import README, ProducerEndpoint
from tests.support.scripted_provider import script
from tests.webhooks.test_tracking import email_type

# Committed for real: the metrics and the producer events count what commits (transaction.on_commit).
pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "SG.story"
TWILIO_SID, TWILIO_TOKEN = "AC" + "5" * 32, "story-token"
CALLBACK_URL = "https://notifier.example.com" + STATUS_PATH
METRICS_TOKEN = "scrape-me"


@pytest.fixture
def world(settings, producer):
    with FakeSendGrid(api_key=API_KEY) as sendgrid, FakeTwilio(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio, \
            ProducerEndpoint() as endpoint:
        settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["tests.support.scripted_provider"], "email": ["sendgrid"],
                                               "sms": ["twilio"]}
        settings.NOTIFIER_PROVIDER_CONFIG = {
            "sendgrid": {"api_key": API_KEY, "from_email": "shop@example.com", "host": sendgrid.url, "timeout": 2,
                         "webhook_public_key": sendgrid.public_key},
            "twilio": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from_number": "+15005550006",
                       "base_url": twilio.url, "status_callback_url": CALLBACK_URL, "timeout": 2},
        }
        settings.METRICS_TOKEN = METRICS_TOKEN
        producer.webhook_url = f"{endpoint.url}/events"
        producer.save()
        yield {"sendgrid": sendgrid, "twilio": twilio, "endpoint": endpoint, "producer": producer}


def notify(api, type_key, user, channels, **contact):
    response = api.post("/api/v1/notifications", {"type": type_key, "recipients": [{"user_id": user, **contact}],
                                                   "channels": channels, "data": {"order_id": "42"},
                                                   "priority": "high"}, format="json")
    assert response.status_code == 202, response.json()
    route_due("high")
    for channel in channels:
        deliver_due(channel, "high")
    return response.json()["notifications"][0]["id"]


def history(api, notification_id, channel):
    """(status, source) of each event of the notification's delivery on `channel`, through the API."""
    body = api.get(f"/api/v1/notifications/{notification_id}").json()
    [delivery] = [d for d in body["deliveries"] if d["channel"] == channel]
    return [(e["status"], e["source"]) for e in delivery["events"] if e["applied"]], delivery


def sendgrid_posts(client, fake, delivery_id, *kinds, **fields):
    [mail] = fake.accepted_for(delivery_id)
    body, headers = fake.signed([fake.event(mail, kind, **fields) for kind in kinds])
    response = client.post(EVENTS_PATH, body, content_type=headers.pop("Content-Type"), headers=headers)
    assert response.status_code == 200, response.content


def test_every_outcome_shows_its_whole_history_and_the_producer_hears_each_signed(client, api, world):
    sale = email_type("spring_sale", "marketing")
    make_order_type("order_shipped", channels=("email", "sms", "push"))
    sendgrid, endpoint = world["sendgrid"], world["endpoint"]

    # An email delivered, opened, then clicked.
    api.put("/api/v1/users/u_7", {"email": "u7@example.com"}, format="json")
    from notifier.models import Recipient
    Recipient.objects.filter(user_id="u_7").update(marketing_opt_in=True)
    liked = notify(api, "spring_sale", "u_7", ["email"])
    email = Delivery.objects.get(notification_id=liked)
    sendgrid_posts(client, sendgrid, email.id, "delivered", "open", "click")
    events, shown = history(api, liked, "email")
    assert events == [("sending", "worker"), ("sent", "worker"), ("delivered", "sendgrid"), ("opened", "sendgrid"),
                      ("clicked", "sendgrid")]
    assert shown["status"] == "clicked" and shown["clicked_at"]

    # A bounce, and the next email to that address suppressed: routed, not sent.
    bounced = notify(api, "order_shipped", "u_8", ["email"], email="gone@example.com")
    sendgrid_posts(client, sendgrid, Delivery.objects.get(notification_id=bounced).id, "bounce")
    assert history(api, bounced, "email")[0][-1] == ("bounced", "sendgrid")
    assert EmailSuppression.objects.filter(address="gone@example.com").exists()
    requests_before = len(sendgrid.requests)
    after_bounce = notify(api, "order_shipped", "u_8", ["email"])
    assert len(sendgrid.requests) == requests_before
    [decision] = api.get(f"/api/v1/notifications/{after_bounce}").json()["decisions"]
    assert decision["decision"] == "skipped" and "suppressed" in decision["reason"]

    # An SMS Twilio could not deliver.
    texted = notify(api, "order_shipped", "u_9", ["sms"], phone="+14155550109")
    sms = Delivery.objects.get(notification_id=texted)
    fields = {"MessageSid": sms.provider_message_id, "MessageStatus": "undelivered", "ErrorCode": "30003",
              "AccountSid": TWILIO_SID}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(CALLBACK_URL, fields)
    assert client.post(STATUS_PATH, urlencode(fields), content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature).status_code == 204
    events, shown = history(api, texted, "sms")
    assert events == [("sending", "worker"), ("sent", "worker"), ("failed", "twilio")]
    assert "30003" in shown["last_error"]

    # A push to a token the provider says is gone: failed, and the device pruned.
    api.post("/api/v1/users/u_10/devices", {"platform": "ios", "token": "dead-token"}, format="json")
    script("dead-token", {"kind": "permanent", "code": "Unregistered", "target_gone": True})
    pushed = notify(api, "order_shipped", "u_10", ["push"])
    assert history(api, pushed, "push")[0] == [("sending", "worker"), ("failed", "worker")]
    assert Device.objects.get(token="dead-token").active is False

    # A one-click unsubscribe from the marketing email (no cookies, no CSRF token), then no more marketing.
    [sent] = [r for r in sendgrid.requests
              if r.body["personalizations"][0]["custom_args"]["delivery_id"] == str(email.id)]
    link = urlsplit(sent.body["headers"]["List-Unsubscribe"].strip("<>")).path
    assert Client(enforce_csrf_checks=True).post(link, "List-Unsubscribe=One-Click",
                                                 content_type="application/x-www-form-urlencoded").status_code == 200
    assert Unsubscription.objects.filter(recipient__user_id="u_7", category="marketing", source="link").exists()
    muted = notify(api, "spring_sale", "u_7", ["email"])
    assert Notification.objects.get(id=muted).status == "suppressed"

    # Admin shows the same history.
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    ops = Client()
    ops.login(username="ops", password="pw")
    page = ops.get(f"/admin/notifier/delivery/{email.id}/change/").content.decode()
    assert "History" in page and all(status in page for status in ("delivered", "opened", "clicked"))

    # The producer received each of these as signed events, and README's snippet verifies them.
    producer_webhooks_send()
    snippet = re.search(r"```python\n(.*?)```", README[README.index("### Verifying a signature"):], re.S).group(1)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    received = []
    for request in endpoint.requests:
        assert namespace["verify"](request.raw, request.headers["Notifier-Signature"], world["producer"].webhook_secret)
        received += [event["type"] for event in request.body["events"]]
    assert {"delivery.delivered", "delivery.opened", "delivery.clicked", "delivery.bounced", "delivery.failed",
            "recipient.unsubscribed"} <= set(received)

    # Prometheus scrapes the figures.
    scrape = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert scrape.status_code == 200
    text = scrape.content.decode()
    assert 'notifier_webhook_events_total{result="applied",source="sendgrid"}' in text
    assert "notifier_delivery_reports_total" in text and "notifier_due_rows" in text
