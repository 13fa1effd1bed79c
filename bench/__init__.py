"""`make bench`: measured throughput and latency of notifier (see BENCHMARKS.md and bench/run.py)."""
