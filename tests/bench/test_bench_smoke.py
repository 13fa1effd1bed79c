"""The benchmark harness must not rot: `python -m bench.run --scenario smoke` (under a minute) starts the
fakes, granian, the Celery workers and the naive design, and writes a table with measured numbers."""
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


SMOKE_DATABASE = "notifier_bench_smoke"


def smoke_env() -> dict:
    """Its own database and Redis db, so a test run never disturbs a real `make bench` (notifier_bench, db 9)."""
    return {**os.environ, "BENCH_DATABASE_URL": f"{postgres_server()}/{SMOKE_DATABASE}",
            "BENCH_REDIS_URL": os.environ.get("BENCH_SMOKE_REDIS_URL", "redis://127.0.0.1:6379/10")}


def postgres_server() -> str:
    return os.environ.get("BENCH_SMOKE_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def test_the_smoke_bench_measures_every_main_figure():
    # A new database every run: one left by a checkout with other migrations (another branch, a renamed
    # migration) would make `migrate` fail on columns that already exist.
    with psycopg.connect(postgres_server() + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SMOKE_DATABASE}" WITH (FORCE)')
    run = subprocess.run([sys.executable, "-m", "bench.run", "--scenario", "smoke"], cwd=ROOT, env=smoke_env(),
                         capture_output=True, text=True, timeout=240)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (ROOT / "bench" / "results" / "smoke.md").read_text()
    number = r"[\d,]+(\.\d)? "
    assert re.search(r"\| ingest \| single-recipient POSTs accepted/s \| notifier \|[^|]*\| " + number + r"req/s", table)
    for channel in ("push", "email", "sms", "in_app"):
        assert re.search(rf"\| {channel}: POST → provider p50 \| notifier \|[^|]*\| {number}ms", table), channel
    assert re.search(r"\| sustained end-to-end rate[^|]*\| notifier \|[^|]*\| " + number + "notifications/s", table)
    nonzero = r"(?!0(\.0)? )" + number  # a design that delivered nothing is broken, not slow
    assert re.search(r"\| sustained end-to-end rate[^|]*\| naive \|[^|]*\| " + nonzero + "notifications/s", table)
    # Each figure beside its ceilings, measured in the same run (bench/ceilings.py).
    assert re.search(r"\| ingest \| HTTP ceiling: GET /livez[^|]*\| ceiling \|[^|]*\| " + number + r"req/s", table)
    assert re.search(r"\| ingest \| single-recipient POSTs accepted/s \|([^|]*\|){4}[^|]*\(HTTP\); [^|]*\(single INSERT\) \|"
                     r" \d+ % \(HTTP\); \d+ % \(single INSERT\) \|", table)
    assert re.search(r"\| sustained end-to-end rate[^|]*\| notifier \|([^|]*\|){4} \d+ % \(slowest fake, \w+\) \|", table)
