"""gunicorn settings that its command line cannot give: prometheus-client's multiprocess bookkeeping.
Used by the Procfile and docker-compose (`gunicorn -c deploy/gunicorn.conf.py ...`). The hook runs in the
master, which has not loaded Django: it uses prometheus-client alone."""
import os
import socket


def child_exit(server, worker):
    # A worker that exits takes its live gauges with it (prometheus-client's multiprocess docs). The file
    # names carry host-pid, as notifier.metrics.process_identifier makes them. Imported here: the bench
    # serves a peer with this file from a virtualenv without prometheus-client (bench/harness.py api_start).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(f"{socket.gethostname().replace('_', '-')}-{worker.pid}")
