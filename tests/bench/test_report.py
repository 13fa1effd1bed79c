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
