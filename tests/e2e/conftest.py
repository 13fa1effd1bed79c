"""Real processes for end-to-end tests: Celery workers and the API's server (granian, as the Procfile runs it),
on the test database (committed data: these tests use transaction=True) and the real broker."""
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

import celeryconfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**overrides) -> dict:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifier_project.settings",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "DB_CONN_MAX_AGE": "0",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def _die_with_parent():
    # If the test run itself is killed, its workers must not live on and steal later runs' messages.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


class Process:
    def __init__(self, args, env, log_path, ready_text, timeout=30):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while ready_text not in Path(log_path).read_text():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[0]} did not start:\n{Path(log_path).read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self):
        """SIGKILL the whole process group, as the OOM killer or a lost machine would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def output(self) -> str:
        return Path(self.log_path).read_text()


@pytest.fixture
def start_worker(tmp_path):
    started = []

    def start(queues=celeryconfig.ALL_QUEUES, concurrency=2, **env):
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        worker = Process(
            [str(BIN / "celery"), "-A", "notifier_project", "worker", "-Q", ",".join(queues), "-c", str(concurrency),
             "-n", f"{name}@%h", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            process_env(**env), tmp_path / f"{name}.log", ready_text="ready.",
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(tmp_path):
    started = []

    def start(**env):
        name = f"beat-{uuid.uuid4().hex[:8]}"
        beat = Process(
            [str(BIN / "celery"), "-A", "notifier_project", "beat", "--schedule", str(tmp_path / f"{name}-schedule"),
             "--loglevel=INFO"],
            process_env(**env), tmp_path / f"{name}.log", ready_text="beat: Starting",
        )
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def _procfile_api_server() -> tuple[str, ...]:
    """The Procfile's `api` line (granian's arguments) without its address and its worker and thread
    counts, which each test gives: the tests run the server as it ships."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("api: "))
    args = shlex.split(line.split(": ", 1)[1])[1:]
    given = {"--host", "--port", "--workers", "--blocking-threads"}
    return tuple(a for i, a in enumerate(args) if a not in given and (i == 0 or args[i - 1] not in given))


API_SERVER = _procfile_api_server()


@pytest.fixture
def start_api(tmp_path):
    started = []

    def start(server_args=("--workers", "1", "--blocking-threads", "16"), port=None, **env):
        port = port or free_port()
        server = Process(
            [str(BIN / "granian"), *API_SERVER, "--host", "127.0.0.1", "--port", str(port), *server_args],
            process_env(**env), tmp_path / f"api-{port}.log", ready_text="Spawning worker",
        )
        server.url = f"http://127.0.0.1:{port}"
        started.append(server)
        wait_until(lambda: _answers(server.url), timeout=15)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_streams(tmp_path):
    """The stream server (notifier/streams) as the Procfile's `stream` line runs it: uvicorn, on a free port."""
    started = []

    def start(**env):
        port = free_port()
        server = Process(
            [str(BIN / "uvicorn"), "notifier.streams.asgi:app", "--host", "127.0.0.1", "--port", str(port),
             "--backlog", "4096", "--timeout-graceful-shutdown", "1", "--no-access-log"],
            process_env(**env), tmp_path / f"streams-{port}.log", ready_text="Uvicorn running on",
        )
        server.url = f"http://127.0.0.1:{port}"
        server.port = port
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _answers(url) -> bool:
    try:
        requests.get(url + "/api/v1/sandbox/messages", timeout=1)
        return True
    except requests.RequestException:  # refused, or too slow to answer while the worker boots
        return False


def wait_until(predicate, timeout=30, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
