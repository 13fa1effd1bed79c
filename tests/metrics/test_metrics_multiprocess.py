"""Multiprocess mode: the counts of several processes (gunicorn workers, Celery prefork children) add up
in one scrape, through the files they write in PROMETHEUS_MULTIPROC_DIR; a dead process's live gauges go."""
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from notifier.metrics import process_identifier
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


def test_gunicorns_child_exit_hook_drops_the_live_gauges_of_the_worker_that_exited(multiproc_dir):
    pid = run_process(
        "import django; django.setup(); import notifier.metrics, os; from prometheus_client import Gauge\n"
        "Gauge('in_flight', 'x', multiprocess_mode='livesum').set(1); print(os.getpid())", multiproc_dir)
    live_file = multiproc_dir / f"gauge_livesum_{process_identifier(pid)}.db"
    assert live_file.exists()

    hooks = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    hooks["child_exit"](None, SimpleNamespace(pid=pid))

    assert not live_file.exists()
