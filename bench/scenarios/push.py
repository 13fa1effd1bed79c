"""push: one notification to 2,500 users with 4 Android devices each (10,000 devices), FCM through
firebase-admin to the same fake FCM: notifier (3 POSTs of up to 1,000 recipients, timed from the first POST
to the 10,000th request arriving at the fake) against django-push-notifications
(`GCMDevice.objects.filter(user__in=…).send_message(…)`, timed around the call, which returns when FCM
answered every message)."""
import json
import subprocess
import time

import requests

from bench import ceilings, seed
from bench.e2e import notifier_stack
from bench.harness import BIN, ROOT, base_env, data_reset, py_spy, py_spy_top
from bench.report import row

USERS, PER_USER = 2500, 4
PEER = "django-push-notifications"


def _notifier(ctx) -> dict:
    seed.push_users(USERS, PER_USER)
    data_reset()
    with notifier_stack(ctx.fakes) as (api, processes):
        headers = {"Authorization": f"Bearer {ctx.key}"}

        def post(user_ids):
            body = {"type": "bench_push", "recipients": [{"user_id": f"push-u{i}"} for i in user_ids],
                    "data": {"bench_ref": "warm"}}
            answer = requests.post(api.url + "/api/v1/notifications", json=body, headers=headers, timeout=60)
            answer.raise_for_status()

        post([0])  # warm up: connections and the OAuth token
        _wait_for(ctx, PER_USER, 30)
        ctx.fakes.reset()
        profile = py_spy([p.pid for p in processes if p.name.startswith("worker")], 20, "push-workers")
        started = time.time()
        for first in range(0, USERS, 1000):
            post(range(first, min(USERS, first + 1000)))
        summary = _wait_for(ctx, USERS * PER_USER, 180)
        hottest = py_spy_top(profile)
    data_reset()
    seconds = summary["last_at"] - started if summary["last_at"] else None
    return {"seconds": seconds, "arrived": summary["requests"], "hottest": hottest}


def _wait_for(ctx, count, timeout) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        summary = ctx.fakes.summary("fcm")
        if summary["requests"] >= count or time.monotonic() > deadline:
            return summary
        time.sleep(0.25)


def peer_send(ctx, users: int = USERS, per_user: int = PER_USER, prefix: str = "push-u") -> dict:
    """django-push-notifications sends one notification to every device of the users `prefix`0 … (seeded in
    its tables first, kept between runs) through `send_message`, to the FCM fake:
    {"seconds", "success", "failure", "arrived"}. The campaign scenario calls it too."""
    env = base_env(DJANGO_SETTINGS_MODULE="bench.peers.settings")
    fcm = ctx.fakes.info["fcm"]["config"]

    def call(*args):
        out = subprocess.run([str(BIN / "python"), "-m", "bench.peers.push_send", *args, "--prefix", prefix],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
        return json.loads(out.stdout.strip().splitlines()[-1])

    call("--seed", str(users), "--devices-per-user", str(per_user))
    ctx.fakes.reset()
    result = call("--send", "--credentials", fcm["credentials_file"], "--endpoint", fcm["endpoint"])
    result["arrived"] = ctx.fakes.summary("fcm")["requests"]
    return result


def run(ctx) -> list[dict]:
    total = USERS * PER_USER
    fcm = ceilings.provider("push", ctx.fakes, "fcm", 5, key="push_fcm_ceiling")
    ours = _notifier(ctx)
    rows = [ceilings.against(row(
        "push", f"one notification to {total:,} Android devices: devices/s",
        round(total / ours["seconds"], 1) if ours["seconds"] and ours["arrived"] >= total else None,
        "devices/s", None, None, key="push_fanout",
        setup=f"{ours['arrived']:,} FCM requests arrived in {ours['seconds'] and round(ours['seconds'], 2)} s "
              "from the first POST", raw=ours, hottest=ours["hottest"]), fcm, "fake fcm"), fcm]
    try:
        theirs = peer_send(ctx)
        rows.append(row("push", f"one notification to {total:,} Android devices: devices/s",
                        round(total / theirs["seconds"], 1), "devices/s", None, None, key="push_fanout", system=PEER,
                        setup=f"send_message returned after {theirs['seconds']} s; {theirs['success']:,} sent, "
                              f"{theirs['failure']:,} failed, {theirs['arrived']:,} arrived at the fake; "
                              "FCM_MAX_RECIPIENTS lowered to 500 (its default of 1,000 makes send_each raise)",
                        raw=theirs))
    except Exception as error:
        rows.append(row("push", f"one notification to {total:,} Android devices: devices/s", None, "devices/s", None,
                        None, key="push_fanout", system=PEER, status=f"not runnable: {error}"[:300]))
    return rows
