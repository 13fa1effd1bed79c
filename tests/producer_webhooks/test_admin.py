"""Admin: a producer's webhook URL and secret, and the Producer events view with its filters and replay."""
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from notifier.models import Producer, ProducerEvent, ProducerEventStatus as E
from notifier.pipeline.status import StatusEvent, delivery_events_apply
from notifier.producer_webhooks import producer_webhooks_send
from tests.producer_webhooks.conftest import make_delivery

pytestmark = pytest.mark.django_db

EVENTS = reverse("admin:notifier_producerevent_changelist")


def producer_form(producer, **changes):
    return {"name": producer.name, "scopes": producer.scopes, "is_active": "on", "quota_requests": "",
            "webhook_url": producer.webhook_url, **changes}


def test_an_operator_sets_a_webhook_url_and_sees_the_generated_secret(ops, producer):
    page = reverse("admin:notifier_producer_change", args=[producer.id])

    response = ops.post(page, producer_form(producer, webhook_url="https://shop.example.com/hooks"))

    assert response.status_code == 302
    producer.refresh_from_db()
    assert producer.webhook_url == "https://shop.example.com/hooks"
    assert producer.webhook_secret.startswith("whsec_")
    assert producer.webhook_secret in ops.get(page).content.decode()


@pytest.mark.parametrize("url, problem", [("https://me:pw@shop.example.com/hooks", "No credentials"),
                                          ("javascript:alert(1)", "http:// or https://")])
def test_a_webhook_url_with_credentials_or_another_scheme_is_refused_on_its_field(ops, producer, url, problem):
    response = ops.post(reverse("admin:notifier_producer_change", args=[producer.id]),
                        producer_form(producer, webhook_url=url))

    assert response.status_code == 200
    assert problem in str(response.context["adminform"].form.errors["webhook_url"])
    producer.refresh_from_db()
    assert producer.webhook_url == ""


def test_rotating_the_webhook_secret_shows_the_new_one_and_signs_with_it(ops, hooked_producer):
    old = hooked_producer.webhook_secret

    response = ops.post(reverse("admin:notifier_producer_changelist"),
                        {"action": "rotate_webhook_secrets", ACTION_CHECKBOX_NAME: [hooked_producer.id]}, follow=True)

    hooked_producer.refresh_from_db()
    assert hooked_producer.webhook_secret != old
    assert hooked_producer.webhook_secret in response.content.decode()


@pytest.fixture
def events(hooked_producer, endpoint, order_type, reachable_user):
    """Three events: one sent, one failed, one pending."""
    deliveries = [make_delivery(hooked_producer, order_type, reachable_user, target=f"{n}@example.com")
                  for n in range(3)]
    delivery_events_apply([StatusEvent(deliveries[0].id, "delivered", "sendgrid")])
    producer_webhooks_send()
    endpoint.set_default(status=500)
    delivery_events_apply([StatusEvent(deliveries[1].id, "bounced", "sendgrid")])
    ProducerEvent.objects.filter(type="delivery.bounced").update(give_up_at=timezone.now())
    producer_webhooks_send()
    delivery_events_apply([StatusEvent(deliveries[2].id, "opened", "pixel")])
    by_type = {event.type: event for event in ProducerEvent.objects.all()}
    assert [by_type[t].status for t in ("delivery.delivered", "delivery.bounced", "delivery.opened")] == [
        E.SENT, E.FAILED, E.PENDING]
    return by_type


def listed(response) -> set:
    return {event.type for event in response.context["cl"].result_list}


def test_the_events_view_filters_by_status_type_and_producer(ops, events, hooked_producer):
    assert listed(ops.get(EVENTS)) == {"delivery.delivered", "delivery.bounced", "delivery.opened"}
    assert listed(ops.get(EVENTS, {"status__exact": "failed"})) == {"delivery.bounced"}
    assert listed(ops.get(EVENTS, {"type": "delivery.opened"})) == {"delivery.opened"}
    assert listed(ops.get(EVENTS, {"producer__id__exact": hooked_producer.id})) == set(events)
    assert listed(ops.get(EVENTS, {"q": str(events["delivery.opened"].delivery_id)})) == {"delivery.opened"}


def test_an_event_page_shows_its_body_attempts_and_last_error(ops, events):
    failed = events["delivery.bounced"]

    page = ops.get(reverse("admin:notifier_producerevent_change", args=[failed.id])).content.decode()

    assert str(failed.id) in page and "&quot;delivery.bounced&quot;" in page
    assert "HTTP 500: {}" in page


def test_the_replay_action_sends_failed_and_sent_events_again_and_leaves_pending_ones(ops, events, endpoint):
    endpoint.set_default(status=200)
    before = len(endpoint.requests)

    response = ops.post(EVENTS, {"action": "replay", ACTION_CHECKBOX_NAME: [e.id for e in events.values()]},
                        follow=True)

    message = "2 event(s) will be sent again within seconds; 1 still pending, left as they are."
    assert message in response.content.decode()
    assert set(ProducerEvent.objects.values_list("status", flat=True)) == {E.PENDING}
    assert Producer.objects.get().webhook_paused_until is None  # the failure's pause ends with the replay
    assert producer_webhooks_send() == 3
    assert {e["type"] for e in endpoint.requests[before].body["events"]} == set(events)


def test_replaying_from_a_list_filtered_by_status_counts_what_it_replayed(ops, events):
    failed = events["delivery.bounced"]

    response = ops.post(EVENTS + "?status__exact=failed", {"action": "replay", ACTION_CHECKBOX_NAME: [failed.id]},
                        follow=True)

    assert "1 event(s) will be sent again within seconds." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == E.PENDING
