"""`make bench-stats` (bench/stats_query.py): its section of BENCHMARKS.md survives the renders of `make
bench`, and the script runs end to end on a small seed in a database of its own."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report, stats_query

ROOT = Path(__file__).resolve().parents[2]


def test_a_render_of_benchmarks_md_keeps_the_stats_query_section():
    rendered = report.render({"scenarios": {}, "facts": {}})

    assert stats_query.SECTION.read_text().strip() in rendered


@pytest.mark.e2e
def test_a_small_stats_bench_times_every_case_and_drops_its_database():
    result = subprocess.run([sys.executable, "-m", "bench.stats_query", "--deliveries", "2000"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "BENCH_STATS_DATABASE_URL"})

    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 24 h") or line.startswith("| 30 d")]
    assert len(rows) == 10 and all(" ms |" in row for row in rows), result.stdout
    assert "notifier_stats_bench_2000" not in subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SELECT datname FROM pg_database"],
        capture_output=True, text=True).stdout
