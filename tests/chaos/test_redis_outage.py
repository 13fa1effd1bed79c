"""Redis (the broker, the wake-up flags, the quota) killed for 30 s while the API takes 20 requests/s, then
back empty: no request waits past 2 s; each answer is 202 (stored) or 503 (nothing stored, retryable); every
202 ends terminal once Redis is back, sent once."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from notifier.models import Notification
from tests.chaos.conftest import accepted_ids, all_terminal, settle, terminal_ids
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 30
REQUESTS_PER_SECOND = 20
REQUEST_DEADLINE_SECONDS = 2


def notify(url, key, idempotency_key):
    started = time.monotonic()
    response = requests.post(f"{url}/api/v1/notifications", headers={"Authorization": f"Bearer {key}"},
                             json={"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"},
                                   "channels": ["email"], "idempotency_key": idempotency_key}, timeout=30)
    return idempotency_key, time.monotonic() - started, response


def test_requests_during_a_redis_outage_answer_at_once_and_every_202_is_delivered_once_redis_is_back(
    producer, order_type, reachable_user, own_redis, sendgrid, chaos_env, chaos_report, start_api, start_worker,
    start_beat
):
    env = {**chaos_env, "CELERY_BROKER_URL": own_redis.url, "REDIS_URL": own_redis.url,
           "NOTIFIER_RATE_LIMITS_ENABLED": "false", "NOTIFIER_PRODUCER_QUOTA_REQUESTS": 100000}
    api = start_api(("--workers", "1", "--blocking-threads", "16"), **env)
    start_worker(**env)
    start_beat(**env)
    run = uuid.uuid4().hex[:8]

    own_redis.kill()  # refused from now on; whatever it held (queued wake-ups, flags) is gone
    with ThreadPoolExecutor(max_workers=64) as pool:
        futures, begin = [], time.monotonic()
        for i in range(OUTAGE_SECONDS * REQUESTS_PER_SECOND):
            time.sleep(max(0.0, begin + i / REQUESTS_PER_SECOND - time.monotonic()))
            futures.append(pool.submit(notify, api.url, producer.key, f"{run}-{i}"))
        answers = [future.result() for future in futures]
    own_redis.restart()  # empty, on the same port: the workers and beat reconnect by themselves

    by_status = {}
    for idempotency_key, _, response in answers:
        by_status.setdefault(response.status_code, []).append(idempotency_key)
    slowest = max(elapsed for _, elapsed, _ in answers)
    assert set(by_status) <= {202, 503}, {status: len(keys) for status, keys in by_status.items()}
    assert slowest < REQUEST_DEADLINE_SECONDS, f"a request took {slowest:.1f} s"
    stored = set(Notification.objects.values_list("idempotency_key", flat=True))
    assert set(by_status.get(202, [])) <= stored  # 202: stored
    assert not set(by_status.get(503, [])) & stored  # 503: nothing stored, the producer retries

    wait_until(all_terminal, timeout=120, interval=1)

    duplicates = settle(chaos_report, sendgrid)
    chaos_report.notes.append(f"{len(by_status.get(202, []))} x 202, {len(by_status.get(503, []))} x 503, "
                              f"slowest {slowest:.2f} s")
    assert accepted_ids() == terminal_ids()  # every 202 ends terminal: 0 lost
    assert len(sendgrid.calls_per_delivery()) == len(by_status.get(202, []))
    assert duplicates == {}
