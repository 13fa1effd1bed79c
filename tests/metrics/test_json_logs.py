"""LOG_FORMAT=json: one JSON object a line, a delivery's outcome carrying its ids."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.log_format import CONTEXT_KEYS, JsonFormatter
from notifier.models import Delivery
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.e2e.conftest import process_env
from tests.pipeline.test_route import make_notification

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_a_delivery_outcome_log_line_is_json_with_the_deliverys_ids(order_type, reachable_user, caplog):
    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")

    with caplog.at_level(logging.INFO, logger="notifier.pipeline.dispatch"):
        deliver_due("email", "high")

    delivery = Delivery.objects.get(notification=notification)
    [record] = [r for r in caplog.records if r.name == "notifier.pipeline.dispatch"]
    line = json.loads(JsonFormatter().format(record))
    assert {key: line[key] for key in CONTEXT_KEYS} == {
        "notification_id": str(notification.id), "delivery_id": delivery.id, "channel": "email",
        "provider": "sandbox", "attempt": 1, "producer": notification.producer_id,
    }
    assert line["message"].startswith(f"sandbox: {delivery.status} delivery {delivery.id}")
    assert line["level"] == "INFO" and line["logger"] == "notifier.pipeline.dispatch"


@pytest.mark.django_db
def test_log_format_json_makes_every_log_line_of_a_process_json():
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('notifier.test').warning('hello %s', 'there', extra={'delivery_id': 7})")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=process_env(LOG_FORMAT="json"),
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert (line["message"], line["delivery_id"], line["level"]) == ("hello there", 7, "WARNING")


def test_an_unknown_log_format_is_refused_at_start():
    # No database needed: the settings refuse it before anything connects.
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                          env=_env(LOG_FORMAT="xml"),
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "LOG_FORMAT must be plain or json" in done.stderr


def _env(**overrides):
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "notifier_project.settings", **overrides}
