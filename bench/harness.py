"""What every scenario needs: a bench database and Redis db, the fake providers, granian and Celery workers
started as the Procfile ships them, machine facts, py-spy profiles, and writing BENCHMARKS.md.

The bench never touches dev or test data: PostgreSQL database `notifier_bench` (BENCH_DATABASE_URL) and
Redis db 9 (BENCH_REDIS_URL), both reset by the scenarios that need it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifier_bench")
# The inbox scenario's rows (10,000,000 by default; BENCH_INBOX_ROWS=200000 to develop with). Another count gets
# databases of its own (notifier_bench_inbox_200000, …), so a small run never reuses or truncates the big seed.
INBOX_ROWS = int(os.environ.get("BENCH_INBOX_ROWS", "10000000"))
_INBOX_SUFFIX = "" if INBOX_ROWS == 10_000_000 else f"_{INBOX_ROWS}"
INBOX_DATABASE_URL = os.environ.get("BENCH_INBOX_DATABASE_URL",
                                    f"postgres://postgres@127.0.0.1:5432/notifier_bench_inbox{_INBOX_SUFFIX}")
# django-notifications-hq's copy of the same inbox, in its own database (bench/peers/notifications_hq).
INBOX_PEER_DATABASE_URL = os.environ.get("BENCH_INBOX_PEER_DATABASE_URL",
                                         f"postgres://postgres@127.0.0.1:5432/notifier_bench_inbox_peer{_INBOX_SUFFIX}")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
PROVIDERS = ("apns", "fcm", "sendgrid", "twilio")
# With DEBUG off the settings need a real key: one per bench run, the same in every process it starts.
SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
DATA_TABLES = ["notifier_delivery", "notifier_inboxitem", "notifier_notification", "notifier_idempotencykey",
               "notifier_sandboxmessage", "notifier_campaignchunk", "notifier_campaignmember", "notifier_campaign"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(database_url: str = DATABASE_URL, **overrides) -> dict:
    """Production settings (DEBUG off) pointed at the bench database and Redis db."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifier_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        # The checkout first; a PYTHONPATH the bench was started with is kept after it (a peer installed
        # outside the venv: PYTHONPATH=/path/to/django-push-notifications make bench).
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


# --- database and Redis ---------------------------------------------------------------------------------

def database_ensure(url: str) -> None:
    """Create the database if it does not exist (empty)."""
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def database_create(url: str) -> None:
    """Create the database if it does not exist, then apply notifier's migrations."""
    database_ensure(url)
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=base_env(url), check=True)


def data_reset(url: str = DATABASE_URL) -> None:
    """Forget notifications, deliveries and inbox items; keep recipients, devices, types and producers."""
    with psycopg.connect(url, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        tables = [t for t in DATA_TABLES if t in existing]
        conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    redis_flush()


def redis_flush() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()


# --- processes ------------------------------------------------------------------------------------------

class Process:
    """A subprocess in its own process group with its output in bench/results/logs/<name>.log."""

    def __init__(self, name: str, args: list[str], env: dict, ready=None, timeout: float = 60, wait=True):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.ready, self.timeout = ready, timeout
        if wait:
            self.wait_ready()

    def wait_ready(self) -> "Process":
        deadline = time.monotonic() + self.timeout
        while self.ready is not None and not self.ready(self):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        except FileNotFoundError:
            return []
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        self.log.close()


def _log_contains(text: str):
    return lambda process: text in process.output()


def _answers(url: str):
    def ready(process):
        try:
            requests.get(url + "/api/v1/notifications/x", timeout=1)
            return True
        except requests.RequestException:
            return False

    return ready


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def _expand(command: str, overrides: dict) -> str:
    """${NAME:-default} as the shell would expand it (overrides first, then the environment)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: str(overrides.get(m[1], os.environ.get(m[1], m[2]))), command)


def api_start(env: dict, name: str = "api", workers: int | None = None, threads: int | None = None,
              wsgi: str = "notifier_project.wsgi", bin_dir: Path = BIN) -> Process:
    """The API's server exactly as the Procfile's `api` line ships it (granian: worker processes, threads,
    access log), on a free port; `workers` and `threads` override its counts for a measured proposal. A peer
    passes its own `wsgi` module and the `bin_dir` of its virtualenv, and is served the same way."""
    port = free_port()
    overrides = {"API_HOST": "127.0.0.1", "API_PORT": port}
    if workers:
        overrides["API_WORKERS"] = workers
    if threads:
        overrides["API_THREADS"] = threads
    args = shlex.split(_expand(procfile()["api"], overrides))
    args[0] = str(bin_dir / args[0])
    args = [f"{wsgi}:application" if a == "notifier_project.wsgi:application" else a for a in args]
    url = f"http://127.0.0.1:{port}"
    process = Process(name, args, env, ready=_answers(url))
    process.url = url
    process.workers = int(args[args.index("--workers") + 1])
    process.setup = " ".join(a for a in args[1:] if not a.startswith(("%", "127.0.0.1")) and a != str(port))
    process.description = (f"granian {process.workers} workers × {args[args.index('--blocking-threads') + 1]} "
                           f"threads")
    return process


def streams_start(env: dict, name: str = "streams") -> Process:
    """The stream server exactly as the Procfile's `stream` line ships it (uvicorn), on a free port."""
    port = free_port()
    args = shlex.split(_expand(procfile()["stream"], {"STREAM_HOST": "127.0.0.1", "STREAM_PORT": port}))
    args[0] = str(BIN / args[0])
    process = Process(name, args, env, ready=_log_contains("Uvicorn running on"))
    process.url = f"http://127.0.0.1:{port}"
    process.description = "uvicorn " + " ".join(a for a in args[1:] if a not in ("--host", "127.0.0.1", "--port", str(port)))
    return process


def rss_mib(process: Process) -> float:
    """Resident memory of a process and its children (uvicorn --workers), in MiB, from /proc."""
    total_kib = 0
    for pid in [process.pid] + process.children():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return round(total_kib / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far, in seconds, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def peer_venv(path: Path, requirements: Path) -> Path:
    """A bench-only virtualenv for a peer that cannot share notifier's (django-notifications-hq needs an older
    Django): created at `path` with `requirements` installed by pip from its configured index, rebuilt when
    the requirements file changes. Returns its bin directory; RuntimeError with pip's own words on failure."""
    stamp = path / ".installed"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return path / "bin"
    if not (path / "bin" / "python").exists():
        out = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"python -m venv {path.name} failed: {(out.stderr or out.stdout).strip()[-300:]}")
    out = subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r",
                          str(requirements)], capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        errors = [line for line in (out.stderr or out.stdout).strip().splitlines() if "ERROR" in line]
        reason = errors[-1] if errors else (out.stderr or out.stdout).strip()[-300:]
        raise RuntimeError(f"pip install -r {os.path.relpath(requirements, ROOT)} into {path.name} failed: {reason}")
    stamp.write_text(wanted + "\n")
    return path / "bin"


def workers_start(env: dict, prefix: str = "worker") -> list[Process]:
    """Every `worker_*` line of the Procfile, as shipped."""
    started = []
    for name, command in procfile().items():
        if not name.startswith("worker"):
            continue
        args = shlex.split(command)
        args[0] = str(BIN / args[0])
        args = [a.replace("@%h", f"-bench@%h") for a in args]
        started.append(Process(f"{prefix}-{name}", args, env, ready=_log_contains("ready."), timeout=90, wait=False))
    return [process.wait_ready() for process in started]  # started together, waited for together


def worker_groups() -> dict[str, list[str]]:
    """celeryconfig.WORKER_GROUPS of this checkout, read when the bench runs (groups come and go)."""
    import importlib

    import celeryconfig

    return dict(importlib.reload(celeryconfig).WORKER_GROUPS)


def worker_group_commands(include: str = "") -> list[dict]:
    """One command per group of celeryconfig.WORKER_GROUPS, as `make run` starts it: the Procfile's
    `worker_<group>` line (its concurrency and options) consuming the group's queues. A group without a
    Procfile line gets concurrency 1, and says so in `note`. `include` adds `--include <modules>` (the
    bench's measuring hooks, bench/probes.py)."""
    lines = procfile()
    commands = []
    for group, queues in worker_groups().items():
        line = lines.get(f"worker_{group}")
        note = ""
        if line:
            args = shlex.split(line)
            if "--queues" in args:
                args[args.index("--queues") + 1] = ",".join(queues)
            else:
                args += ["--queues", ",".join(queues)]
        else:
            args = ["celery", "-A", "notifier_project", "worker", "--queues", ",".join(queues), "--concurrency",
                    "1", "--hostname", f"{group}@%h", "--loglevel", "INFO"]
            note = "no Procfile line: concurrency 1"
        args[0] = str(BIN / args[0])
        args = [a.replace("@%h", "-bench@%h") for a in args]
        if include:
            args += ["--include", include]
        concurrency = int(args[args.index("--concurrency") + 1]) if "--concurrency" in args else os.cpu_count()
        commands.append({"group": group, "queues": list(queues), "args": args, "concurrency": concurrency,
                         "note": note})
    return commands


def worker_groups_start(env: dict, include: str = "") -> list[Process]:
    """Every group of celeryconfig.WORKER_GROUPS (worker_group_commands), started together."""
    started = []
    for command in worker_group_commands(include):
        process = Process(f"worker-{command['group']}", command["args"], env, ready=_log_contains("ready."),
                          timeout=90, wait=False)
        process.group, process.queues, process.concurrency = command["group"], command["queues"], command["concurrency"]
        process.note = command["note"]
        started.append(process)
    try:
        return [process.wait_ready() for process in started]
    except Exception:
        for process in started:
            process.stop()
        raise


def beat_start(env: dict) -> Process:
    LOGS.mkdir(parents=True, exist_ok=True)
    return Process("beat", [str(BIN / "celery"), "-A", "notifier_project", "beat", "--schedule",
                            str(LOGS / "celerybeat-schedule"), "--loglevel", "WARNING"], env)


class Fakes:
    """The four fake provider servers, one process each (bench/fakes.py)."""

    def __init__(self, latency: float = 0.0, providers=PROVIDERS):
        self.latency = latency
        self.processes, self.info = [], {}
        for provider in providers:
            LOGS.mkdir(parents=True, exist_ok=True)
            popen = subprocess.Popen(
                [str(BIN / "python"), "-m", "bench.fakes", "--provider", provider, "--latency", str(latency)],
                cwd=ROOT, env=base_env(), stdout=subprocess.PIPE, stderr=open(LOGS / f"fake-{provider}.log", "w"),
                text=True, start_new_session=True,
            )
            self.processes.append(popen)
            self.info[provider] = json.loads(popen.stdout.readline())

    def env(self) -> dict:
        env = {}
        for info in self.info.values():
            env.update(info["env"])
        return env

    def reset(self) -> None:
        for info in self.info.values():
            requests.post(info["control"] + "/reset", timeout=10)

    def arrivals(self) -> dict[str, dict[str, float]]:
        """provider -> {bench ref: first arrival}."""
        return {p: requests.get(i["control"] + "/arrivals", timeout=60).json()["arrivals"] for p, i in self.info.items()}

    def summary(self, provider: str) -> dict:
        """{"requests": how many so far, "messages": targets in them (a batch counts each), "first_at",
        "last_at": when the first and last one arrived}."""
        return requests.get(self.info[provider]["control"] + "/summary", timeout=60).json()

    def targets(self, provider: str, prefix: str = "", listed: bool = False) -> dict:
        """Messages per target (an email address, a device token, a number) starting with `prefix`:
        {"targets": messages, "distinct": targets, "duplicated": targets with more than one, "examples",
        "requests", "first_at", "last_at"} (bench/fakes.py Ledger), and with `listed` {"counts": {target:
        messages}}. A batch of 1,000 personalizations is 1,000 messages."""
        params = {"prefix": prefix, **({"list": "1"} if listed else {})}
        return requests.get(self.info[provider]["control"] + "/targets", params=params, timeout=300).json()

    def stop(self) -> None:
        for popen in self.processes:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(popen.pid, signal.SIGKILL)


def loadgen(url: str, key: str, **options) -> dict:
    """Run the load generator as its own process and return its JSON result."""
    args = [str(BIN / "python"), "-m", "bench.loadgen", "--url", url, "--key", key]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:  # 0 is a value (warmup=0), not a missing flag
            args += [flag, str(value)]
    out = subprocess.run(args, cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# --- profiling ------------------------------------------------------------------------------------------

def py_spy(pids: list[int], seconds: float, name: str) -> Process | None:
    """Start sampling `pids` (and their children) with py-spy for `seconds`; None when py-spy is missing."""
    if not (BIN / "py-spy").exists() or not pids:
        return None
    out = LOGS / f"profile-{name}.txt"
    processes = []
    for pid in pids:
        processes.append(subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw",
             "--duration", str(int(seconds)), "--rate", "50", "--output", f"{out}.{pid}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return {"processes": processes, "out": out, "pids": pids}


def py_spy_top(profile, top: int = 6) -> list[str]:
    """The hottest functions by own time (leaf frames of the collapsed stacks), as "function (file) NN%",
    then our own functions (notifier/, bench/naive/) by inclusive time: which pipeline step costs most."""
    if not profile:
        return ["py-spy not available"]
    for process in profile["processes"]:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    leaves, ours, total = Counter(), Counter(), 0
    for pid in profile["pids"]:
        path = Path(f"{profile['out']}.{pid}")
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            if not frames:
                continue
            names = [_frame_name(f) for f in frames]
            leaves[names[-1]] += int(count)
            for name in set(n for n in names if n.split("(")[-1].startswith(("notifier/", "bench/naive/"))):
                ours[name] += int(count)  # inclusive: time spent in this function of ours or below it
            total += int(count)
    if not total:
        return ["py-spy recorded nothing (ptrace not permitted?)"]
    return ([f"{name} {100 * n / total:.0f}%" for name, n in leaves.most_common(top)]
            + [f"incl. {name} {100 * n / total:.0f}%" for name, n in ours.most_common(4)])


def _frame_name(frame: str) -> str:
    """"function (path:line)" → "function (short path)": one entry per function, paths from the repo or
    site-packages."""
    name = re.sub(r":\d+\)$", ")", frame)
    name = name.replace(str(ROOT) + "/", "")
    return re.sub(r"\(/.*?site-packages/", "(", name)


# --- facts and output -----------------------------------------------------------------------------------

def machine_facts() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gib = None
    with psycopg.connect(DATABASE_URL) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    redis_version = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "postgresql": postgres,
        "redis": redis_version,
        "python": platform.python_version(),
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value} {unit}".strip()
