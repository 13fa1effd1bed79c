"""`python -m notifier_project.wait_for_workers`: wait until a worker of every group in
celeryconfig.WORKER_GROUPS answers a ping (the group is the worker's name before "@", as the Procfile names
them: `high@%h`), at most WAIT_SECONDS. `make run` starts Flower after it (Procfile), because Flower asks
the workers who they are once, when it starts, and its /api/workers answers that cached inspection: started
alongside the workers, it shows `{}` until `?refresh=1`. Exits 1 naming the groups still silent when time
is up; the Procfile starts Flower anyway."""
import sys
import time

import celeryconfig
from notifier_project.celery import app

WAIT_SECONDS = 120


def worker_groups_answering(timeout: float = 1.0) -> set[str]:
    """The groups of the workers that answer a ping within `timeout` seconds."""
    replies = app.control.ping(timeout=timeout) or []
    return {name.split("@", 1)[0] for reply in replies for name in reply}


def worker_groups_wait(groups, wait_seconds: float = WAIT_SECONDS) -> set[str]:
    """Wait until every one of `groups` answers; returns the ones still silent when time is up (empty: all
    answered)."""
    deadline = time.monotonic() + wait_seconds
    missing = set(groups) - worker_groups_answering()
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing -= worker_groups_answering()
    return missing


def main() -> int:
    missing = worker_groups_wait(celeryconfig.WORKER_GROUPS)
    if missing:
        print(f"wait_for_workers: no answer from {', '.join(sorted(missing))} after {WAIT_SECONDS} s; starting "
              f"Flower anyway: ask its /api/workers?refresh=1 once they are up.", file=sys.stderr)
        return 1
    print(f"wait_for_workers: all {len(celeryconfig.WORKER_GROUPS)} worker groups answer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
