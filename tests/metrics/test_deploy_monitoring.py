"""deploy/prometheus and deploy/grafana: the alert rules and the dashboard query only metrics notifier
exports, the rules are valid and fire on what they are meant for (promtool, where it is installed)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from notifier.metrics import metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "notifier.json"
# notifier's series all start so; anything else in an expression is PromQL (functions, labels, keywords).
METRIC = re.compile(r"\bnotifier_[a-z0-9_]+")
SEEDS_ALERTS = {"NotifierDeliverySuccessRateLow", "NotifierHighPriorityLatencyHigh", "NotifierDeadLettersHigh",
                "NotifierBacklogGrowing"}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_exported_names_the_check_compares_with_are_the_real_ones():
    names = metric_names()

    assert {"notifier_deliveries_total", "notifier_delivery_latency_seconds_bucket", "notifier_due_rows",
            "notifier_circuit_state"} <= names
    assert "notifier_deliveries" not in names  # a counter's series end in _total


def test_every_alert_names_only_metrics_notifier_exports():
    rules = alert_rules()

    assert SEEDS_ALERTS <= {rule["alert"] for rule in rules}
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used, f"{rule['alert']} names no notifier metric"
        assert used <= metric_names(), f"{rule['alert']}: unknown {used - metric_names()}"
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_every_dashboard_panel_queries_only_metrics_notifier_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries()

    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert queries
    for title, expr in queries:
        used = set(METRIC.findall(expr))
        assert used and used <= metric_names(), f"panel {title!r}: {expr}"
    # Every alert's metric has a panel to look at when it fires.
    alerted = {name for rule in alert_rules() for name in METRIC.findall(rule["expr"])}
    assert alerted <= {name for _, expr in queries for name in METRIC.findall(expr)}


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus); "
                                             "the structure checks above still ran")
@pytest.mark.parametrize("command", [
    ["check", "rules", "alerts.yml"],
    ["check", "config", "--syntax-only", "prometheus.yml"],
    ["test", "rules", "alerts_test.yml"],  # each alert fires on its series, and not on a healthy one
])
def test_promtool_accepts_the_rules_the_config_and_the_alerts_unit_tests(command):
    done = subprocess.run([PROMTOOL, *command], cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
