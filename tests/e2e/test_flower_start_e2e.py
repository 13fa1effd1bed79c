"""`make run` starts Flower once every worker group answers a ping (Procfile, notifier_project/
wait_for_workers.py): Flower inspects the workers only when it starts, so started alongside them its
/api/workers answered {} until asked with ?refresh=1."""
from pathlib import Path

import pytest
import requests

from notifier_project.wait_for_workers import worker_groups_answering, worker_groups_wait
from tests.e2e.conftest import BIN, ROOT, Process, free_port, process_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_make_run_starts_flower_only_after_waiting_for_the_workers():
    [flower] = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("flower:")]

    wait, _, start = flower.removeprefix("flower:").partition(";")
    assert wait.split() == ["python", "-m", "notifier_project.wait_for_workers"]
    assert "celery -A notifier_project flower" in start


def test_the_wait_ends_when_the_group_answers_and_names_a_group_that_never_does(start_worker):
    start_worker(queues=["maintenance"], concurrency=1)
    [group] = [name for name in worker_groups_answering(timeout=2) if name.startswith("e2e-")]

    assert worker_groups_wait({group}, wait_seconds=30) == set()
    assert worker_groups_wait({group, "nobody-here"}, wait_seconds=1) == {"nobody-here"}


def test_flower_started_after_the_wait_lists_the_workers_without_a_refresh(start_worker, tmp_path):
    start_worker(queues=["maintenance"], concurrency=1)
    [group] = [name for name in worker_groups_answering(timeout=2) if name.startswith("e2e-")]
    assert worker_groups_wait({group}, wait_seconds=30) == set()
    port = free_port()

    flower = Process([str(BIN / "celery"), "-A", "notifier_project", "flower", "--address=127.0.0.1",
                      f"--port={port}"], process_env(FLOWER_UNAUTHENTICATED_API="true"),
                     Path(tmp_path) / "flower.log", ready_text="Visit me at")
    try:
        def workers_listed():
            workers = requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=5).json()
            return any(name.startswith(f"{group}@") for name in workers)

        wait_until(workers_listed, timeout=15)
    finally:
        flower.stop()
