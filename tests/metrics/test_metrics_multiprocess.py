"""Multiprocess mode: the counts of several processes (the API server's workers, Celery prefork children) add
up in one scrape, through the files they write in PROMETHEUS_MULTIPROC_DIR."""
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from notifier.metrics import process_exited, process_identifier
from tests.e2e.conftest import process_env

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]

# A worker process: counts three webhook events and a delivery's outcome through the real functions.
COUNTING_PROCESS = """
import django, os
django.setup()
from django.utils import timezone
from notifier.metrics import status_changes_count, webhook_event_count
from notifier.models import Delivery
from notifier.pipeline.status import StatusChange
webhook_event_count("sendgrid", "applied", 3)
delivery = Delivery(id=1, channel="sms", provider="twilio", priority="high")
status_changes_count([StatusChange(delivery, "sending", "failed", "worker", timezone.now())])
print(os.getpid())
"""


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    """A fresh directory, as `make run` and docker-compose give one at each start."""
    path = tmp_path / "prometheus"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


def run_process(code: str, multiproc_dir) -> int:
    env = process_env(PROMETHEUS_MULTIPROC_DIR=multiproc_dir)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_the_counts_of_two_worker_processes_add_up_in_one_scrape(multiproc_dir, settings):
    settings.NOTIFIER_METRICS_PUBLIC, settings.METRICS_TOKEN = True, ""
    first, second = run_process(COUNTING_PROCESS, multiproc_dir), run_process(COUNTING_PROCESS, multiproc_dir)

    response = Client().get("/metrics")

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}
    assert samples[("notifier_webhook_events_total", (("result", "applied"), ("source", "sendgrid")))] == 6
    assert samples[("notifier_deliveries_total", (("channel", "sms"), ("priority", "high"), ("provider", "twilio"),
                                                  ("status", "failed")))] == 2
    # Each process wrote its own files, named by host and pid.
    assert {path.name for path in multiproc_dir.iterdir()} >= {
        f"counter_{process_identifier(first)}.db", f"counter_{process_identifier(second)}.db"}


def test_a_celery_child_that_exits_takes_its_live_gauges_with_it(multiproc_dir):
    # notifier/apps.py calls process_exited on Celery's worker_process_shutdown.
    pid = run_process(
        "import django; django.setup(); import notifier.metrics, os; from prometheus_client import Gauge\n"
        "Gauge('in_flight', 'x', multiprocess_mode='livesum').set(1); print(os.getpid())", multiproc_dir)
    live_file = multiproc_dir / f"gauge_livesum_{process_identifier(pid)}.db"
    assert live_file.exists()

    process_exited(pid)

    assert not live_file.exists()


def test_the_api_process_keeps_no_live_gauge():
    # A live gauge (multiprocess_mode live*) keeps a dead process's value until someone calls
    # mark_process_dead for it. Celery's children do (notifier/apps.py); the API's server, granian, has no
    # hook for a worker's exit. So the API's own metrics are counters and histograms, and the gauges are
    # read at scrape time (QueueCollector): a live gauge added later needs that hook first.
    from prometheus_client import Gauge

    from notifier.metrics import PROCESS_METRICS

    gauges = [c for c in PROCESS_METRICS._collector_to_names if isinstance(c, Gauge)]
    assert [g._name for g in gauges if g._multiprocess_mode.startswith("live")] == []