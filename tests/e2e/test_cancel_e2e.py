"""Cancel, against a real worker sending through a slow provider: what the cancel stopped never reaches the
provider, and everything else does."""
import pytest

from notifier.models import Delivery, Notification
from tests.conftest import make_reachable_user
from tests.e2e.conftest import wait_until
from tests.support import scripted_provider
from tests.support.scripted_provider import script

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def send(api, user_ids, key):
    response = api.post("/api/v1/notifications", {
        "type": "order_shipped", "recipients": [{"user_id": u} for u in user_ids], "data": {"order_id": "7"},
        "channels": ["push"], "idempotency_key": key,
    }, format="json")
    assert response.status_code == 202, response.content
    return [n["id"] for n in response.json()["notifications"]]


def test_a_cancel_mid_batch_stops_what_was_not_sent_and_the_rest_is_delivered(api, order_type, start_worker):
    users = [f"u{i}" for i in range(15)]
    for user_id in users:
        make_reachable_user(user_id, devices=[("ios", f"token-{user_id}")])
        script(f"token-{user_id}", {"kind": "sleep", "seconds": 0.4})  # each send takes 0.4 s, then succeeds
    # One worker process that claims one delivery at a time: the batch takes about 6 s to go out.
    start_worker(concurrency=1, NOTIFIER_PUSH_PROVIDERS="tests.support.scripted_provider",
                 NOTIFIER_DELIVER_BATCH_SIZE=1)
    cancelled_request = send(api, users[:12], "campaign-1")
    kept_request = send(api, users[12:], "campaign-2")
    wait_until(lambda: len(scripted_provider.sent()) >= 2)

    response = api.post("/api/v1/notifications/cancel", {"idempotency_key": "campaign-1"}, format="json")

    assert response.status_code == 200
    answers = response.json()["notifications"]
    assert sorted(a["id"] for a in answers) == sorted(cancelled_request)
    cancelled = {e["delivery_id"] for a in answers for e in a["cancelled"]}
    gone_or_going = {e["delivery_id"] for a in answers for e in a["already_sent"] + a["in_flight"]}
    assert cancelled and len(gone_or_going) >= 2 and len(cancelled | gone_or_going) == 12
    finished = {"delivered", "partially_delivered", "cancelled", "failed"}
    wait_until(lambda: set(Notification.objects.values_list("status", flat=True)) <= finished, timeout=60)

    reached_provider = [s["delivery_id"] for s in scripted_provider.sent()]
    assert cancelled.isdisjoint(reached_provider)
    kept = set(Delivery.objects.filter(notification_id__in=kept_request).values_list("id", flat=True))
    assert sorted(reached_provider) == sorted(gone_or_going | kept)  # each exactly once
    statuses = {str(n): status for n, status in Notification.objects.values_list("id", "status")}
    assert {statuses[n] for n in kept_request} == {"delivered"}
    cancelled_notifications = {a["id"] for a in answers if a["cancelled"]}
    assert {n for n, status in statuses.items() if status == "cancelled"} == cancelled_notifications
