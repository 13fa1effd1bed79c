import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

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
