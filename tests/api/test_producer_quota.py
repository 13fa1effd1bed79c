import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from notifier.api import quota
from notifier.api.quota import producer_quota_consume
from notifier.models import Notification

pytestmark = pytest.mark.django_db

BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}


def test_a_producer_over_its_quota_gets_429_with_retry_after(api, producer, order_type, reachable_user):
    producer.quota_requests = 2
    producer.save()

    answers = [api.post("/api/v1/notifications", BODY, format="json") for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert 1 <= int(answers[2]["Retry-After"]) <= 60
    assert answers[2].json()["error"]["code"] == "throttled"
    assert Notification.objects.count() == 2


def test_the_settings_default_applies_to_a_producer_without_its_own_quota(api, order_type, reachable_user,
                                                                          settings):
    settings.NOTIFIER_PRODUCER_QUOTA_REQUESTS = 1

    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 429


def test_1000_concurrent_requests_over_the_limit_admit_no_more_than_the_limit():
    barrier = threading.Barrier(50)

    def consume(_):
        if _ < 50:
            barrier.wait()
        return producer_quota_consume(producer_id=7, limit=100, window_seconds=60)[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        admitted = sum(pool.map(consume, range(1000)))

    assert admitted == 100


def test_a_large_quota_is_leased_twenty_requests_a_round_trip(clean_redis, monkeypatch):
    taken = []
    take = quota._TAKE
    original = quota.redis_client

    class Counting:
        def register_script(self, source):
            script = original().register_script(source)

            def call(**kwargs):
                if source == take:
                    taken.append(kwargs["args"][2])
                return script(**kwargs)

            return call

    monkeypatch.setattr(quota, "redis_client", Counting)

    admitted = [producer_quota_consume(producer_id=8, limit=60_000, window_seconds=60)[0] for _ in range(1000)]

    assert all(admitted)
    assert taken == [20] * 50  # a lease of 20 each time: 50 round trips for 1,000 requests
    assert int(clean_redis.get(f"{quota.KEY_PREFIX}8")) == 1000


def test_leases_taken_by_two_processes_admit_no_more_than_the_limit_between_them():
    # limit 4,000: leases of 20. Two processes, each its own leases (cleared between their turns), 50
    # threads each, 3,000 requests each. One thread of a process takes a lease at a time: the first
    # process leaves at most its last lease unspent (exactly none here: 3,000 is 150 leases).
    def process_turn():
        quota.quota_leases_clear()
        with ThreadPoolExecutor(max_workers=50) as pool:
            return sum(pool.map(lambda _: producer_quota_consume(9, 4000, 60)[0], range(3000)))

    first = process_turn()
    second = process_turn()

    assert first == 3000
    assert second == 1000  # the rest of the limit: the first process spent every request it leased
    assert first + second == 4000


def test_a_small_quota_is_counted_one_request_at_a_time():
    assert quota.lease_size(2) == 1 and quota.lease_size(399) == 1
    assert quota.lease_size(4000) == 20 and quota.lease_size(1_000_000) == 20
