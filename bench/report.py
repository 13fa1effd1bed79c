"""Result rows and BENCHMARKS.md.

A row is one measured figure of one system:
    {"scenario", "figure", "system": "notifier" | "naive" | <peer>, "value", "unit",
     "op", "goal" (the target, e.g. ">=", 1500; op is ">=", "<=" or "<"), "key" (rows of other systems with the same key are compared),
     "setup" (conditions, in words), "hottest" (py-spy's hottest functions), "status" ("measured" |
     "skipped: …" | "not runnable: …"), "raw"}
Ratios are "how many times better notifier is": its value over the other's for rates, the other's over its
for latencies.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from bench.harness import RESULTS, ROOT, fmt

PEERS = ["naive", "django-push-notifications", "django-notifications-hq"]


def row(scenario, figure, value, unit, op, goal, *, key, system="notifier", setup="", hottest=None, raw=None,
        status="measured") -> dict:
    return {"scenario": scenario, "figure": figure, "system": system, "value": value, "unit": unit, "op": op,
            "goal": goal, "key": key, "setup": setup, "hottest": hottest, "status": status, "raw": raw}


def _met(r) -> str:
    if r["status"] != "measured" or r["op"] is None:
        return ""
    if r["value"] is None:
        return "no"
    ok = {">=": r["value"] >= r["goal"], "<=": r["value"] <= r["goal"]}.get(r["op"], r["value"] < r["goal"])
    return "yes" if ok else "**no**"


def _ratio(ours, theirs) -> str:
    if not ours or not theirs or ours["value"] in (None, 0) or theirs["value"] in (None, 0):
        return ""
    if theirs["status"] != "measured":
        return ""
    lower_is_better = ours["unit"] == "ms"
    ratio = theirs["value"] / ours["value"] if lower_is_better else ours["value"] / theirs["value"]
    return f"{ratio:.1f}×"


def _kept_lines(previous: str, measured: set) -> dict:
    """The lines of an earlier BENCHMARKS.md for the figures this state has not measured (a fresh clone's
    latest.json holds only what ran on it): their table rows, their conditions, and the run they came
    from. `measured` holds (scenario, figure, system) of the rows about to be written. So `make bench
    SCENARIO=campaign BENCH_CAMPAIGN_SIZES=100000` replaces those rows and keeps the 1,000,000 ones and
    the other scenarios'."""
    kept = {"rows": [], "conditions": [], "runs": []}
    section = ""
    for line in previous.splitlines():
        if line.startswith("## "):
            section = line
        elif section == "## Machine" and line.startswith("- git commit "):
            kept["runs"].insert(0, line[2:])
        elif section == "## Machine" and ": kept from earlier runs: " in line:  # a file merged before
            kept["runs"] += line.split(": kept from earlier runs: ", 1)[1].split("; then ")
        elif section == "## Results" and line.startswith("| ") and not line.startswith(("| scenario ", "| --- ")):
            cells = [cell.strip() for cell in line.split("|")]
            if (cells[1], cells[2], cells[3]) not in measured:
                kept["rows"].append(line)
        elif section.startswith("## Conditions") and line.startswith("- **"):
            title = line[4:].split("**:", 1)[0]  # "scenario / figure (system)"
            scenario, _, rest = title.partition(" / ")
            figure, _, system = rest.rpartition(" (")
            if (scenario, figure, system.removesuffix(")")) not in measured:
                kept["conditions"].append(line)
    return kept


def render(state: dict, previous: str = "") -> str:
    from bench.scenarios import SCENARIOS

    order = {name: index for index, name in enumerate(SCENARIOS)}
    rows = [r for name in sorted(state["scenarios"], key=lambda n: order.get(n, len(order)))
            for r in state["scenarios"][name]["rows"]]
    kept = _kept_lines(previous, {(r["scenario"], r["figure"], r["system"]) for r in rows})
    by_key = {(r["key"], r["system"]): r for r in rows}
    facts = state["facts"]
    this_run = (f"git commit {facts.get('git_commit')}; run {facts.get('date')}; load average at start "
                f"{facts.get('load_average_at_start')}")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); raw figures in bench/results/latest.json. Re-run on a quiet",
        "machine before quoting: every process (load generator, gunicorn, Celery workers, fake providers,",
        "PostgreSQL, Redis) shares the same cores. Ratios say how many times better notifier is (rates: ours /",
        "theirs; latencies: theirs / ours).",
        "",
        "## Machine",
        "",
        f"- CPU: {facts.get('cpu')}, {facts.get('cores')} cores, {facts.get('memory_gib')} GiB",
        f"- PostgreSQL {facts.get('postgresql')}, Redis {facts.get('redis')}, Python {facts.get('python')}",
        f"- {this_run}",
    ]
    if state.get("conditions"):
        lines.append(f"- Conditions: {state['conditions']}")
    if kept["rows"]:
        scenarios = sorted({line.split("|")[1].strip() for line in kept["rows"]}, key=lambda n: order.get(n, len(order)))
        runs = "; then ".join(r for r in dict.fromkeys(kept["runs"]) if r != this_run) or "not recorded"
        lines.append(f"- rows of {', '.join(scenarios)} this run did not measure: kept from earlier runs: {runs}")
    lines += [
        "",
        "## Results",
        "",
        "| scenario | figure | system | target | measured | met | ratio vs naive | ratio vs django-push-notifications | ratio vs django-notifications-hq |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    table = [(r["scenario"], _table_line(r, by_key)) for r in rows]
    table += [(line.split("|")[1].strip(), line) for line in kept["rows"]]
    lines += [line for _, line in sorted(table, key=lambda t: order.get(t[0], len(order)))]  # stable: in order
    lines += ["", "## Conditions and limits, per figure", ""]
    for r in rows:
        if r["setup"] or r["hottest"]:
            text = f"- **{r['scenario']} / {r['figure']} ({r['system']})**: {r['setup']}"
            if r["hottest"] and _met(r) in ("**no**", ""):
                text += f". Hottest functions (py-spy, own time): {'; '.join(r['hottest'])}"
            lines.append(text)
    lines += kept["conditions"]
    notes = state.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    analysis = ROOT / "bench" / "analysis.md"  # hand-written reading of the figures, kept across runs
    if analysis.exists():
        lines += ["", analysis.read_text().strip()]
    streams = ROOT / "bench" / "streams.md"  # written by `make bench SCENARIO=streams` (bench/scenarios/streams.py)
    if streams.exists():
        lines += ["", streams.read_text().strip()]
    stats_query = ROOT / "bench" / "stats_query.md"  # written by `make bench-stats` (bench/stats_query.py)
    if stats_query.exists():
        lines += ["", stats_query.read_text().strip()]
    return "\n".join(lines) + "\n"


def _table_line(r: dict, by_key: dict) -> str:
    target = f"{r['op'].replace('>=', '≥').replace('<=', '≤')} {fmt(r['goal'], r['unit'])}" if r["op"] else ""
    measured = fmt(r["value"], r["unit"]) if r["status"] == "measured" else r["status"]
    ratios = ["", "", ""]
    if r["system"] == "notifier":
        ratios = [_ratio(r, by_key.get((r["key"], peer))) for peer in PEERS]
    return f"| {r['scenario']} | {r['figure']} | {r['system']} | {target} | {measured} | {_met(r)} | " + " | ".join(ratios) + " |"


def save(name: str, rows: list[dict], facts: dict, output: Path | None) -> dict:
    """Merge this run's rows into bench/results/latest.json (one entry per scenario) and write the
    Markdown table to `output` (BENCHMARKS.md for real runs)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / ("smoke.json" if name == "smoke" else "latest.json")
    state = json.loads(latest.read_text()) if latest.exists() and name != "smoke" else {"scenarios": {}}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for scenario in {r["scenario"] for r in rows} | ({name} if not rows else set()):
        state["scenarios"][scenario] = {"date": facts["date"], "rows": [r for r in rows if r["scenario"] == scenario]}
    state["facts"] = facts
    state.pop("conditions", None)  # they belong to the run that stated them (bench/run.py --conditions)
    latest.write_text(json.dumps(state, indent=1, default=str))
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=1, default=str))
    if output is not None:
        output.write_text(render(state, output.read_text() if output.exists() else ""))
    return state
