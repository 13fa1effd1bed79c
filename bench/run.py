"""`make bench [SCENARIO=name]`: python -m bench.run --scenario all|smoke|ingest|transactional|naive|push|inbox|campaign|streams

Prepares the bench database (notifier_bench) and Redis db 9, starts the fake providers, runs the chosen
scenarios (bench/scenarios/<name>.py, each `run(ctx) -> rows`), and writes BENCHMARKS.md plus raw JSON in
bench/results/. `smoke` runs a seconds-long version of ingest, transactional and naive (CI runs it so
the harness cannot rot) and writes bench/results/smoke.md instead of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
import traceback

from bench import harness

SMOKE_SCENARIOS = ["ingest", "transactional", "naive"]


class Context:
    """What scenarios share: the producer key, the user pool, the running fakes, and earlier results."""

    def __init__(self, smoke: bool, users: int, latency: float):
        self.smoke = smoke
        self.users = users
        self.latency = latency
        self.results: dict = {}
        self.fakes = None
        self.key = ""


def django_setup() -> None:
    os.environ.update({k: v for k, v in harness.base_env().items() if k in (
        "DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")})
    import django

    django.setup()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    from bench.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", help="all, smoke, or one of: " + ", ".join(SCENARIOS))
    parser.add_argument("--latency", type=float, default=float(os.environ.get("BENCH_FAKE_LATENCY", "0")),
                        help="seconds each fake provider waits before answering (e.g. 0.05 to show concurrency)")
    parser.add_argument("--conditions", default=os.environ.get("BENCH_CONDITIONS", ""),
                        help="a sentence on the machine's state, printed with the results")
    args = parser.parse_args(argv)
    smoke = args.scenario == "smoke"
    names = SMOKE_SCENARIOS if smoke else SCENARIOS if args.scenario == "all" else args.scenario.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from all, smoke, {', '.join(SCENARIOS)}")

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every process the bench started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    if smoke:  # logs of its own: a smoke run (CI, tests) must not overwrite a real run's
        harness.LOGS = harness.RESULTS / "logs-smoke"
    harness.database_create(harness.DATABASE_URL)
    harness.redis_flush()
    django_setup()
    from bench import report, seed

    ctx = Context(smoke=smoke, users=200 if smoke else 10_000, latency=args.latency)
    ctx.key = seed.setup(ctx.users)
    facts = harness.machine_facts()
    facts["fake_provider_latency_s"] = args.latency
    rows, failed = [], []
    ctx.fakes = harness.Fakes(latency=args.latency)
    try:
        for name in names:
            load = [round(x, 2) for x in os.getloadavg()]  # what else was running, for each row's conditions
            print(f"bench: {name} … (load average {', '.join(map(str, load))})", flush=True)
            t0 = time.monotonic()
            try:
                module = importlib.import_module(f"bench.scenarios.{name}")
                got = module.run(ctx)
            except Exception as error:
                traceback.print_exc()
                failed.append(name)
                # A scenario that measured, then found the result wrong (the campaign's counts against the
                # fakes), keeps its rows beside the failure.
                got = list(getattr(error, "rows", [])) + [report.row(name, "scenario failed", None, "", None, None, key=f"{name}_failed",
                                  status="failed: " + traceback.format_exc().strip().splitlines()[-1][:200])]
            for r in got:
                r["load_average_before"] = load
                print(f"  {r['figure']} [{r['system']}]: {r['value'] if r['status'] == 'measured' else r['status']}"
                      f" {r['unit']}" + report.ceilings_text(r), flush=True)
            rows += got
            print(f"bench: {name} took {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        ctx.fakes.stop()
    output = harness.RESULTS / "smoke.md" if smoke else harness.ROOT / "BENCHMARKS.md"
    state = report.save("smoke" if smoke else args.scenario, rows, facts, output)
    if args.conditions and not smoke:
        state["conditions"] = args.conditions
        (harness.RESULTS / "latest.json").write_text(json.dumps(state, indent=1, default=str))
        output.write_text(report.render(state, output.read_text()))
    print(f"bench: wrote {output} in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
