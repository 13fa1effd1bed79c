"""BENCHMARKS.md after `make bench SCENARIO=X`: the figures measured are replaced, every other one is kept."""
from bench import report


def state_with(rows, commit="new1234"):
    facts = {"git_commit": commit, "date": "2026-12-02 13:00 UTC", "load_average_at_start": [0.5]}
    return {"scenarios": {"campaign": {"rows": rows}}, "facts": facts}


def campaign_row(figure, value):
    return report.row("campaign", figure, value, "deliveries/s", ">=", 10000, key=figure, setup=f"measured {value}")


def test_a_run_replaces_the_figures_it_measured_and_keeps_the_others_with_their_run():
    earlier = report.render(state_with([campaign_row("100,000: deliveries/s", 800),
                                        campaign_row("1,000,000: deliveries/s", 700)], commit="old5678"))

    now = report.render(state_with([campaign_row("100,000: deliveries/s", 1200)]), earlier)

    table = [line for line in now.splitlines() if line.startswith("| campaign |")]
    assert len(table) == 2
    assert any("100,000: deliveries/s" in line and "1,200" in line for line in table)
    assert any("1,000,000: deliveries/s" in line and "700" in line for line in table)
    assert "measured 700" in now and "measured 800" not in now
    assert "kept from earlier runs: git commit old5678" in now
    assert report.render(state_with([campaign_row("100,000: deliveries/s", 1200)]), now) == now  # stable


def ingest_state(rows):
    facts = {"git_commit": "new1234", "date": "2026-12-04 02:00 UTC", "load_average_at_start": [0.5]}
    return {"scenarios": {"ingest": {"rows": rows}}, "facts": facts}


def test_a_figure_shows_each_of_its_ceilings_and_its_share_of_them():
    http = report.row("ingest", "HTTP ceiling: GET /livez", 2000.0, "req/s", None, None, key="http", system="ceiling")
    single = report.row("ingest", "single-recipient POSTs accepted/s", 400.0, "req/s", ">=", 1500, key="single",
                        ceilings=[{"name": "HTTP", "value": 2000.0, "unit": "req/s"},
                                  {"name": "single INSERT", "value": 1600.0, "unit": "rows/s"}])

    table = report.render(ingest_state([single, http]))

    line = next(line for line in table.splitlines() if line.startswith("| ingest | single-recipient POSTs"))
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    assert cells[report.COLUMNS.index("ceiling")] == "2,000 req/s (HTTP); 1,600 rows/s (single INSERT)"
    assert cells[report.COLUMNS.index("% of ceiling")] == "20 % (HTTP); 25 % (single INSERT)"
    assert report.ceilings_text(single) == (", 20 % of the HTTP ceiling (2,000 req/s), "
                                            "25 % of the single INSERT ceiling (1,600 rows/s)")
    ceiling_line = next(line for line in table.splitlines() if "| HTTP ceiling: GET /livez | ceiling |" in line)
    assert "| 2,000 req/s |" in ceiling_line


def test_a_share_of_a_ceiling_needs_both_figures():
    assert report.percent_of_ceiling(None, 100) is None and report.percent_of_ceiling(50, 0) is None
    assert report.percent_of_ceiling(50, 200) == 25.0
    unmeasured = report.row("ingest", "single", None, "req/s", None, None, key="single", status="failed: x",
                            ceilings=[{"name": "HTTP", "value": 2000.0, "unit": "req/s"}])
    assert report.ceilings_text(unmeasured) == ""


def test_rows_kept_from_a_table_without_ceiling_columns_get_them_empty():
    old_header = "| scenario | figure | system | target | measured | met | ratio vs naive | ratio vs django-push-notifications | ratio vs django-notifications-hq |"
    earlier = "\n".join(["# Benchmarks", "", "## Machine", "", "- git commit old5678; run x; load average at start [1]",
                         "", "## Results", "", old_header, "| --- |" * 9,
                         "| campaign | 1,000,000: deliveries/s | notifier | ≥ 10,000 deliveries/s | 700 deliveries/s | **no** |  |  |  |",
                         ""])

    now = report.render(ingest_state([report.row("ingest", "single", 400.0, "req/s", None, None, key="single")]),
                        earlier)

    kept = next(line for line in now.splitlines() if line.startswith("| campaign |"))
    assert len(kept.split("|")) - 2 == len(report.COLUMNS)
    assert [c.strip() for c in kept.split("|")[1:-1]][report.COLUMNS.index("met")] == "**no**"
    assert report.render(ingest_state([report.row("ingest", "single", 400.0, "req/s", None, None, key="single")]),
                         now) == now


def test_each_row_says_the_load_average_before_its_scenario():
    r = report.row("ingest", "single", 400.0, "req/s", None, None, key="single", setup="32 clients")
    r["load_average_before"] = [1.25, 0.5, 0.25]

    assert "- **ingest / single (notifier)**: 32 clients; load average before the scenario 1.25, 0.50, 0.25" in \
        report.render(ingest_state([r]))
