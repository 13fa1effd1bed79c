"""Every way of starting notifier gives its API and worker processes one multiprocess directory, emptied
at start, and keeps Flower out of it."""
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_empties_the_directory_before_it_starts_the_processes_with_it():
    commands = subprocess.run(["make", "--dry-run", "run"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60).stdout.splitlines()

    empties = next(i for i, line in enumerate(commands) if "rm -rf var/prometheus && mkdir -p var/prometheus" in line)
    starts = next(i for i, line in enumerate(commands) if "honcho start" in line)
    assert empties < starts
    assert f"PROMETHEUS_MULTIPROC_DIR={ROOT}/var/prometheus" in commands[starts]


def test_the_procfile_runs_the_api_on_granian_and_flower_outside_the_directory():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line and not line.startswith("#"))

    assert lines["api"].startswith("granian --interface wsgi notifier_project.wsgi:application ")
    _, _, flower = lines["flower"].rpartition("; ")  # after waiting for the workers (test_flower_start_e2e.py)
    assert flower.startswith("exec env -u PROMETHEUS_MULTIPROC_DIR ")
    assert not [name for name, line in lines.items() if "PROMETHEUS_MULTIPROC_DIR" in line and name != "flower"]


def test_compose_shares_one_emptied_directory_between_the_api_and_the_workers():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    app = {name: service for name, service in services.items() if service.get("build")}

    assert "rm -rf /var/lib/notifier/metrics/*" in services["metrics-dir"]["command"]
    for name, service in app.items():
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/var/lib/notifier/metrics", name
        assert "metrics:/var/lib/notifier/metrics" in service["volumes"], name
        assert service["depends_on"]["metrics-dir"] == {"condition": "service_completed_successfully"}, name
    assert app["api"]["command"].startswith("granian --interface wsgi notifier_project.wsgi:application ")
    assert app["flower"]["command"].startswith("env -u PROMETHEUS_MULTIPROC_DIR ")
