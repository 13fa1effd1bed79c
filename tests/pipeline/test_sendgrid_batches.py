"""Campaign email through the whole deliver path: low-priority Delivery rows routed like any others, claimed
1,000 at a time, sent through the SendGrid adapter in one request per 1,000 to the fake SendGrid, each
recipient receiving exactly its own rendered and tracked email; SendGrid's events find their deliveries."""
import pytest
from django.utils import timezone

from notifier.models import Delivery, NotificationType, Producer, Recipient, Template
from notifier.models.notifications import Notification
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.tracking import tracked_html
from notifier.webhooks.sendgrid import events_record
from tests.fakes.sendgrid import FakeSendGrid

pytestmark = pytest.mark.django_db

API_KEY = "SG.test-key"


@pytest.fixture(scope="module")
def fake_sendgrid():
    with FakeSendGrid(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def fake(fake_sendgrid, settings):
    fake_sendgrid.clear()
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["sandbox"], "email": ["sendgrid"], "sms": ["sandbox"]}
    settings.NOTIFIER_PROVIDER_CONFIG = {"sendgrid": {"api_key": API_KEY, "from_email": "news@shop.example",
                                                      "host": fake_sendgrid.url, "timeout": 10}}
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {}
    yield fake_sendgrid
    fake_sendgrid.clear()


@pytest.fixture
def sale_type(db):
    """A marketing email: tracked (links through the click redirect, an open pixel), with an unsubscribe
    link and List-Unsubscribe headers of each recipient's own."""
    sale = NotificationType.objects.create(key="autumn_sale", category="marketing", default_channels=["email"],
                                           default_priority="low", variables={"code": {"required": True}})
    Template.objects.create(
        type=sale, channel="email", language="en", subject="Autumn sale: {{ code }}",
        body="Your code is {{ code }}. See https://shop.example/sale. Unsubscribe: {{ unsubscribe_url }}",
        html_body=('<p>Your code is <b>{{ code }}</b>.</p><p>Everything for the cold days ahead, jackets, boots, '
                   'scarves and gloves, at last year\'s prices.</p><p><a href="https://shop.example/sale">Shop the '
                   'sale</a> or <a href="https://shop.example/stores">find a store</a>.</p>'
                   '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'),
    )
    return sale


def campaign_routed(sale_type, count: int) -> None:
    """`count` opted-in recipients, one low-priority notification each (as a campaign chunk makes them),
    routed into their email deliveries."""
    producer = Producer.objects.first() or Producer.create_with_key("shop", ["send"])[0]
    recipients = Recipient.objects.bulk_create(
        Recipient(user_id=f"c{n}", email=f"c{n}@example.com", marketing_opt_in=True) for n in range(count))
    now = timezone.now()
    Notification.objects.bulk_create(
        Notification(producer=producer, type=sale_type, recipient=recipient, priority="low", due_at=now,
                     data={"code": f"SALE-{n:05d}"}) for n, recipient in enumerate(recipients))
    while route_due("low", batch_size=1000):
        pass


def test_campaign_email_goes_out_in_one_request_per_thousand_each_recipient_getting_its_own(fake, sale_type):
    campaign_routed(sale_type, 2500)

    claimed = deliver_due("email", "low", batch_size=1000)  # one wake-up drains full batches (dispatch.py)

    assert claimed == 2500
    assert [len(request.body["personalizations"]) for request in fake.requests] == [1000, 1000, 500]
    deliveries = list(Delivery.objects.filter(channel="email").select_related("notification"))
    assert len(deliveries) == 2500
    assert {(d.status, d.provider, d.attempts) for d in deliveries} == {("sent", "sendgrid", 1)}
    assert len({d.provider_message_id for d in deliveries}) == 3
    for delivery in deliveries:
        [mail] = fake.accepted_for(delivery.id)
        assert mail.email == delivery.target
        assert mail.message_id == delivery.provider_message_id
        assert mail.subject == delivery.content["subject"] == f"Autumn sale: {delivery.notification.data['code']}"
        assert mail.text == delivery.content["body"]
        assert mail.html == tracked_html(delivery.content["html_body"], delivery.id)  # its own tracked links
        assert mail.headers["List-Unsubscribe"] == delivery.content["headers"]["List-Unsubscribe"]
        assert mail.headers["X-Notification-ID"] == str(delivery.notification_id)
    assert len({fake.accepted_for(d.id)[0].headers["List-Unsubscribe"] for d in deliveries}) == 2500


def test_an_invalid_address_in_a_campaign_fails_alone(fake, sale_type):
    campaign_routed(sale_type, 20)
    Delivery.objects.filter(target="c7@example.com").update(target="c7.example.com")

    deliver_due("email", "low", batch_size=1000)

    statuses = dict(Delivery.objects.values_list("target", "status"))
    assert statuses.pop("c7.example.com") == "failed"
    assert set(statuses.values()) == {"sent"}
    assert [len(request.body["personalizations"]) for request in fake.requests] == [20, 19]


def test_sendgrids_events_about_a_batch_find_each_delivery(fake, sale_type):
    campaign_routed(sale_type, 5)
    deliver_due("email", "low", batch_size=1000)
    deliveries = list(Delivery.objects.filter(channel="email").order_by("id"))
    mails = [fake.accepted_for(d.id)[0] for d in deliveries]

    counts = events_record([fake.event(mails[0], "delivered"), fake.event(mails[1], "open"),
                            # without our custom args: by the batch's message id and the address
                            fake.event(mails[2], "delivered", custom_args=False),
                            fake.event(mails[3], "click", custom_args=False)])

    assert (counts["applied"], counts["unmatched"]) == (4, 0)
    statuses = [d.status for d in Delivery.objects.filter(channel="email").order_by("id")]
    assert statuses == ["delivered", "opened", "delivered", "clicked", "sent"]
