"""A producer receives the signed status events of its notification from real workers and beat."""
import pytest

from tests.e2e.conftest import start_beat, start_worker, wait_until  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_producer_receives_its_notifications_delivered_events_signed_from_beat(
        api, hooked_producer, endpoint, order_type, reachable_user, readme_verify, start_worker, start_beat):
    start_worker()
    start_beat(NOTIFIER_PRODUCER_WEBHOOKS_INTERVAL_SECONDS=1)

    response = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                  "data": {"order_id": "789"}, "idempotency_key": "order-789"},
                        format="json")
    notification_id = response.json()["notifications"][0]["id"]

    events = wait_until(lambda: len(e := [e for r in endpoint.requests for e in r.body["events"]]) >= 5 and e,
                        timeout=60)
    assert sorted((e["type"], e["data"]["channel"]) for e in events) == [
        ("delivery.delivered", "email"), ("delivery.delivered", "in_app"), ("delivery.delivered", "push"),
        ("delivery.delivered", "push"), ("delivery.delivered", "sms")]
    assert {(e["data"]["notification_id"], e["data"]["idempotency_key"]) for e in events} == {
        (notification_id, "order-789")}
    assert all(readme_verify(r.raw, r.headers["Notifier-Signature"], hooked_producer.webhook_secret)
               for r in endpoint.requests)
