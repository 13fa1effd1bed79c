"""One module per scenario, each with `run(ctx) -> list[row]` (see bench/run.py for the row format).
A new scenario is one module here and one line in SCENARIOS."""
SCENARIOS = ["ingest", "transactional", "naive", "push", "inbox", "campaign", "streams"]
