"""The benchmark harness must not rot: `python -m bench.run --scenario smoke` (under a minute) starts the
fakes, gunicorn, the Celery workers and the naive design, and writes a table with measured numbers."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_the_smoke_bench_measures_every_main_figure():
    run = subprocess.run([sys.executable, "-m", "bench.run", "--scenario", "smoke"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (ROOT / "bench" / "results" / "smoke.md").read_text()
    number = r"[\d,]+(\.\d)? "
    assert re.search(r"\| ingest \| single-recipient POSTs accepted/s \| notifier \|[^|]*\| " + number + r"req/s", table)
    for channel in ("push", "email", "sms", "in_app"):
        assert re.search(rf"\| {channel}: POST → provider p50 \| notifier \|[^|]*\| {number}ms", table), channel
    assert re.search(r"\| sustained end-to-end rate[^|]*\| notifier \|[^|]*\| " + number + "notifications/s", table)
    assert re.search(r"\| sustained end-to-end rate[^|]*\| naive \|[^|]*\| " + number + "notifications/s", table)
