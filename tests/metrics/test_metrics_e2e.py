"""A notification through real Celery prefork workers and a real API server (granian) with two workers, in
multiprocess mode: its deliveries show on /metrics, whichever of its workers answers the scrape."""
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import start_api, start_worker, wait_until  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-scrape-token"


def scrape(url) -> dict:
    response = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_a_delivery_through_the_sandbox_provider_shows_up_in_metrics(api, order_type, reachable_user,
                                                                      start_worker, start_api, tmp_path):
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()  # fresh, as make run and docker-compose give it
    start_worker(concurrency=2, PROMETHEUS_MULTIPROC_DIR=multiproc_dir)
    server = start_api(server_args=("--workers", "2"),
                       PROMETHEUS_MULTIPROC_DIR=multiproc_dir, METRICS_TOKEN=TOKEN)

    response = api.post("/api/v1/notifications",
                        {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}}, format="json")
    assert response.status_code == 202

    def delivered(samples, channel):
        provider = "inbox" if channel == "in_app" else "sandbox"
        return samples.get(("notifier_deliveries_total", (("channel", channel), ("priority", "high"),
                                                          ("provider", provider), ("status", "delivered"))), 0)

    expected = {"push": 2, "email": 1, "sms": 1, "in_app": 1}
    samples = wait_until(lambda: (s := scrape(server.url)) and all(delivered(s, c) == n for c, n in expected.items())
                         and s)

    for channel, n in expected.items():
        assert samples[("notifier_delivery_latency_seconds_count", (("channel", channel), ("priority", "high")))] == n
    # Every row was taken: nothing is due any more.
    assert not [key for key in samples if key[0] == "notifier_due_rows"]
    # The counts came from the workers' processes, through their files.
    assert any(path.name.startswith("counter_") for path in multiproc_dir.iterdir())
