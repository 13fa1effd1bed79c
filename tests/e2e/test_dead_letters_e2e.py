"""Dead letters replayed through the API are delivered by a real worker, on their channel and on another."""
import pytest

from notifier.models import Delivery, Notification
from tests.e2e.conftest import wait_until
from tests.support import scripted_provider
from tests.support.dead_letters import SCRIPTED, make_dead_letters, use_scripted_providers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_replayed_dead_letters_are_delivered_on_their_channel_and_on_another(api, settings, order_type, start_worker):
    use_scripted_providers(settings)
    to_email, to_sms = make_dead_letters(order_type, 2, "email")
    start_worker(NOTIFIER_EMAIL_PROVIDERS=SCRIPTED, NOTIFIER_SMS_PROVIDERS=SCRIPTED)

    same = api.post(f"/api/v1/dead-letters/{to_email.id}/replay", {}, format="json")
    other = api.post(f"/api/v1/dead-letters/{to_sms.id}/replay", {"channel": "sms"}, format="json")

    assert same.status_code == other.status_code == 202
    notifications = [to_email.notification_id, to_sms.notification_id]
    wait_until(lambda: set(Notification.objects.filter(id__in=notifications).values_list("status", flat=True))
               == {"delivered"})
    replays = {d.id: (d.channel, d.status) for d in Delivery.objects.filter(replayed_from__isnull=False)}
    assert replays == {same.json()["delivery_id"]: ("email", "sent"), other.json()["delivery_id"]: ("sms", "sent")}
    sent = {(s["delivery_id"], s["to"]): s["body"] for s in scripted_provider.sent()}
    assert sent[(same.json()["delivery_id"], to_email.target)] == "Order 42 ships with UPS."
    assert sent[(other.json()["delivery_id"], "+14155550100")] == "Order 42 ships with UPS."
    # The dead rows stay as history and point at their replays.
    listed = {d["id"]: d["replayed_as"] for d in api.get("/api/v1/dead-letters").json()["dead_letters"]}
    assert listed == {to_email.id: same.json()["delivery_id"], to_sms.id: other.json()["delivery_id"]}
