"""transactional: end-to-end latency from the client's POST to the provider request arriving at the fake
server (push: APNs and FCM, email: SendGrid, sms: Twilio) or the inbox row existing (in_app), at a steady
rate; then the highest end-to-end rate the pipeline sustains (a burst, timed until every message arrived).
Each notification goes to one user on all four channels: five provider messages."""
from bench import ceilings
from bench.e2e import notifier_stack, run_load, warm_up
from bench.harness import data_reset, py_spy, py_spy_top
from bench.report import row

TARGETS = {"p50": 100, "p99": 500}


def latency_rows(scenario: str, result: dict, setup: str, hottest=None, system="notifier") -> list[dict]:
    rows = []
    for channel, stats in result["latency"].items():
        for name, limit in TARGETS.items():
            note = f"{setup}; {stats['n']} messages" + (f", {stats['missing']} never arrived" if stats["missing"] else "")
            rows.append(row(scenario, f"{channel}: POST → provider {name}", stats[name], "ms", "<", limit,
                            key=f"e2e_{channel}_{name}", system=system, setup=note, hottest=hottest))
    return rows


def floor_rows(result: dict) -> list[dict]:
    """Latency at a rate far below capacity (20/s): the pipeline's own floor, without queueing."""
    stats = result["latency"]
    rows = []
    for name in ("p50", "p99"):
        worst = max((s[name] for s in stats.values() if s[name] is not None), default=None)
        detail = ", ".join(f"{channel} {s[name]} ms" for channel, s in stats.items())
        rows.append(row("transactional", f"slowest channel: POST → provider {name} at 20/s", worst, "ms", None, None,
                        key=f"e2e_floor_{name}", setup=f"20/s for 5 s; {detail}"))
    return rows


def capacity_row(scenario, result, setup, system="notifier", hottest=None) -> dict:
    completion = result["completion"]
    return row(scenario, "sustained end-to-end rate (all 5 messages delivered)", completion["rate"],
               "notifications/s", None, None, key="e2e_capacity", system=system, hottest=hottest,
               setup=f"{setup}; {completion.get('completed')}/{completion.get('sent')} completed in "
                     f"{completion.get('span_s')} s", raw=result)


def provider_ceilings(ctx, scenario: str) -> list[dict]:
    """Each fake's ceiling (bench/ceilings.py), before notifier starts: a notification here is one request
    to each of them, so the slowest one bounds the end-to-end rate."""
    return [ceilings.provider(scenario, ctx.fakes, name, 2 if ctx.smoke else 5, key=f"{scenario}_{name}_ceiling")
            for name in ("apns", "fcm", "sendgrid", "twilio")]


def slowest(rows: list[dict]) -> dict | None:
    """The lowest provider ceiling, or None when one was not measured (the lowest would then be a guess)."""
    measured = [r for r in rows if r["status"] == "measured" and r["value"]]
    return min(measured, key=lambda r: r["value"]) if len(measured) == len(rows) else None


def run(ctx) -> list[dict]:
    rate, duration = (20, 3) if ctx.smoke else (150, 20)  # the latency target holds at 150/s offered
    burst_rate, burst_duration = (40, 2) if ctx.smoke else (400, 10)
    fakes = provider_ceilings(ctx, "transactional")
    data_reset()
    with notifier_stack(ctx.fakes) as (api, processes):
        warm_up(ctx.fakes, api.url, ctx.key, ctx.users)
        floor = None if ctx.smoke else run_load(ctx.fakes, api.url, ctx.key, rate=20, duration=5, users=ctx.users)
        steady = run_load(ctx.fakes, api.url, ctx.key, rate=rate, duration=duration, users=ctx.users)
        rows = latency_rows("transactional", steady, f"{rate}/s offered for {duration} s "
                            f"({steady['load']['accepted_per_s']}/s accepted)")
        if floor:
            rows += floor_rows(floor)
        workers = [p.pid for p in processes if p.name.startswith("worker")]
        profile = None if ctx.smoke else py_spy(workers, burst_duration + 5, "transactional-workers")
        burst = run_load(ctx.fakes, api.url, ctx.key, rate=burst_rate, duration=burst_duration, users=ctx.users,
                         timeout=150)
        capacity = capacity_row("transactional", burst, f"burst of {burst_rate}/s for {burst_duration} s",
                                hottest=py_spy_top(profile) if profile else None)
        bound = slowest(fakes)
        rows.append(ceilings.against(capacity, bound, f"slowest fake, {bound['raw']['provider']}" if bound else ""))
    rows += fakes
    ctx.results["transactional"] = {"floor": floor, "steady": steady, "burst": burst}
    return rows
