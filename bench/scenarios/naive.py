"""naive: the deliberately naive Celery design of bench/naive on the same data, the same fakes and the same
burst as the transactional scenario: the highest end-to-end rate it sustains, and its latency under it."""
from bench.e2e import naive_stack, run_load, warm_up
from bench.harness import data_reset
from bench.scenarios.transactional import capacity_row


def run(ctx) -> list[dict]:
    burst_rate, burst_duration = (40, 2) if ctx.smoke else (400, 10)
    data_reset()
    with naive_stack(ctx.fakes) as (api, _):
        warm_up(ctx.fakes, api.url, ctx.key, ctx.users)
        burst = run_load(ctx.fakes, api.url, ctx.key, rate=burst_rate, duration=burst_duration, users=ctx.users,
                         timeout=30 if ctx.smoke else 120)
    data_reset()
    latency = burst["latency"]
    setup = (f"burst of {burst_rate}/s for {burst_duration} s, 4 worker processes; under it push p50 "
             f"{latency['push']['p50']} ms, p99 {latency['push']['p99']} ms")
    return [capacity_row("naive", burst, setup, system="naive")]
