"""Result rows and BENCHMARKS.md.

A row is one measured figure of one system:
    {"scenario", "figure", "system": "notifier" | "naive" | <peer>, "value", "unit",
     "op", "goal" (the target, e.g. ">=", 1500; op is ">=", "<=" or "<"), "key" (rows of other systems with the same key are compared),
     "setup" (conditions, in words), "hottest" (py-spy's hottest functions), "status" ("measured" |
     "skipped: …" | "not runnable: …"), "raw", "ceilings" ([{"name", "value", "unit"}]: the most this machine
     gave the same clients in the same run, bench/ceilings.py), "load_average_before" (bench/run.py)}
A ceiling is itself a row, of system "ceiling".
Ratios are "how many times better notifier is": its value over the other's for rates, the other's over its
for latencies.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from bench.harness import RESULTS, ROOT, fmt

PEERS = ["naive", "django-push-notifications", "django-notifications-hq"]


COLUMNS = ["scenario", "figure", "system", "target", "measured", "met", "ceiling", "% of ceiling",
           *(f"ratio vs {peer}" for peer in PEERS)]
# The table before the ceiling columns: its kept lines get them, empty.
COLUMNS_BEFORE_CEILINGS = [c for c in COLUMNS if c not in ("ceiling", "% of ceiling")]


def row(scenario, figure, value, unit, op, goal, *, key, system="notifier", setup="", hottest=None, raw=None,
        status="measured", ceilings=None) -> dict:
    return {"scenario": scenario, "figure": figure, "system": system, "value": value, "unit": unit, "op": op,
            "goal": goal, "key": key, "setup": setup, "hottest": hottest, "status": status, "raw": raw,
            "ceilings": list(ceilings or [])}


def percent_of_ceiling(value, ceiling) -> float | None:
    """The figure as a share of its ceiling, in per cent; None when either is missing."""
    if value is None or not ceiling:
        return None
    return round(100 * value / ceiling, 1)


def _shares(r: dict) -> list[tuple[dict, float | None]]:
    """Each ceiling of a measured figure, with the figure's share of it."""
    if r["status"] != "measured":
        return []
    return [(c, percent_of_ceiling(r["value"], c["value"])) for c in r.get("ceilings") or []]


def _ceiling_cells(r: dict) -> tuple[str, str]:
    """The "ceiling" and "% of ceiling" cells: each ceiling as "2,900 req/s (HTTP)", its share beside."""
    shares = _shares(r)
    return ("; ".join(f"{fmt(c['value'], c['unit'])} ({c['name']})" for c, _ in shares),
            "; ".join(f"{'—' if share is None else f'{share:.0f} %'} ({c['name']})" for c, share in shares))


def ceilings_text(r: dict) -> str:
    """What bench/run.py prints after a figure: ", 14 % of the HTTP ceiling (2,900 req/s)"."""
    return "".join(f", {'—' if share is None else f'{share:.0f} %'} of the {c['name']} ceiling "
                   f"({fmt(c['value'], c['unit'])})" for c, share in _shares(r))


def _with_ceiling_cells(line: str) -> str:
    """A table line kept from a file written before the ceiling columns, with them added (empty)."""
    cells = line.split("|")[1:-1]
    if len(cells) != len(COLUMNS_BEFORE_CEILINGS):
        return line
    at = COLUMNS_BEFORE_CEILINGS.index("met") + 1
    cells[at:at] = ["  ", "  "]
    return "|" + "|".join(cells) + "|"


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
                kept["rows"].append(_with_ceiling_cells(line))
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
        "machine before quoting: every process (load generator, granian, Celery workers, fake providers,",
        "PostgreSQL, Redis) shares the same cores. Ratios say how many times better notifier is (rates: ours /",
        "theirs; latencies: theirs / ours). A ceiling is the most this machine gave the same clients in the same",
        "run with notifier doing no work (bench/ceilings.py: a no-op endpoint, bare inserts, each fake driven by a",
        "lean client); \"% of ceiling\" is the figure's share of it.",
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
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    table = [(r["scenario"], _table_line(r, by_key)) for r in rows]
    table += [(line.split("|")[1].strip(), line) for line in kept["rows"]]
    lines += [line for _, line in sorted(table, key=lambda t: order.get(t[0], len(order)))]  # stable: in order
    lines += ["", "## Conditions and limits, per figure", ""]
    for r in rows:
        load = r.get("load_average_before")
        if r["setup"] or r["hottest"] or load:
            setup = "; ".join(part for part in (r["setup"], load and "load average before the scenario "
                                                + ", ".join(f"{x:.2f}" for x in load)) if part)
            text = f"- **{r['scenario']} / {r['figure']} ({r['system']})**: {setup}"
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
    ceiling, share = _ceiling_cells(r)
    return (f"| {r['scenario']} | {r['figure']} | {r['system']} | {target} | {measured} | {_met(r)} | {ceiling} | "
            f"{share} | " + " | ".join(ratios) + " |")


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
