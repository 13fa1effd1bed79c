"""`make run` keeps its data in SQLite: the segment queries (JSON key lookups, the type checks of gt/lt,
the batched INSERT … SELECT of members) and the dry run must work there too. This runs their tests on a
SQLite database of its own, in a pytest of its own (a process can have one default database)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_segment_queries_pass_on_sqlite(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'notifier.sqlite3'}", "SEGMENT_TESTS_VENDOR": "sqlite"}

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/campaigns/test_segment_queries.py",
         "tests/campaigns/test_dry_run.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
