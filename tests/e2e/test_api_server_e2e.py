"""The API's server as the Procfile runs it (granian): a worker process that dies is replaced, and the
service answers again without anyone restarting it."""
import os
import signal
import subprocess

import pytest
import requests

from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def worker_pids(server) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(server.popen.pid)], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in found}


def test_a_killed_worker_process_is_replaced_and_the_api_answers_again(producer, order_type, reachable_user,
                                                                        start_api):
    server = start_api(("--workers", "1", "--blocking-threads", "4"))
    (worker,) = wait_until(lambda: worker_pids(server), timeout=10)

    os.kill(worker, signal.SIGKILL)  # as the OOM killer would
    replaced = wait_until(lambda: (pids := worker_pids(server)) and worker not in pids and pids, timeout=20)

    def accepted():
        try:
            return requests.post(f"{server.url}/api/v1/notifications", timeout=5,
                                 headers={"Authorization": f"Bearer {producer.key}"},
                                 json={"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}
                                 ).status_code == 202
        except requests.RequestException:
            return False

    assert wait_until(accepted, timeout=20)
    assert len(replaced) == 1 and server.popen.poll() is None
