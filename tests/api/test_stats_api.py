"""GET /api/v1/stats: the figures of a small known set of deliveries, the filters, who sees what, and the
400s. The deliveries are made by deliveries_build (the pipeline's one constructor) and given the timestamps
pipeline/status.py would have set."""
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.channels.base import Target
from notifier.models import Delivery, Notification, NotificationType, Recipient
from notifier.pipeline.deliveries import deliveries_build
from notifier.stats import StatsFilter, delivery_stats
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db


def client_for(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def shop():
    producer, key = make_producer("shop", ["send"])
    producer.client = client_for(key)
    return producer


@pytest.fixture
def types():
    return {key: NotificationType.objects.create(key=key, default_channels=["email"])
            for key in ("order_shipped", "promo")}


@pytest.fixture
def recipient():
    return Recipient.objects.create(user_id="u_1", email="u_1@example.com")


def make_delivery(producer, notification_type, recipient, channel, status, *, due, latency_ms=None,
                  reached=(), priority="high"):
    """One notification due at `due` with one delivery on `channel` now in `status`, sent `latency_ms`
    after `due` (None: never sent), having reached each of `reached` (delivered, opened, clicked)."""
    notification = Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                               priority=priority, due_at=due, status="processing")
    [delivery] = deliveries_build(notification, channel, [Target(f"{channel}-{notification.id}")], None,
                                  next_attempt_at=due)
    delivery.status = status
    if latency_ms is not None:
        delivery.sent_at = due + timedelta(milliseconds=latency_ms)
    for step in reached:
        setattr(delivery, f"{step}_at", delivery.sent_at + timedelta(seconds=1))
    if status in ("failed", "dead", "bounced"):
        delivery.failed_at = due + timedelta(seconds=2)
    delivery.save()
    return delivery


@pytest.fixture
def known(shop, types, recipient):
    """Ten deliveries of the shop an hour ago; latencies of the seven sent: 100 … 500, 1000, 2000 ms."""
    due = timezone.now() - timedelta(hours=1)
    order, promo = types["order_shipped"], types["promo"]
    for status, latency, reached in (
        ("clicked", 100, ("delivered", "opened", "clicked")),
        ("opened", 200, ("delivered", "opened")),
        ("delivered", 300, ("delivered",)),
        ("sent", 400, ()),
        ("bounced", 500, ("delivered",)),  # delivered, then bounced: counts in both
        ("failed", None, ()),
    ):
        make_delivery(shop, order, recipient, "email", status, due=due, latency_ms=latency, reached=reached)
    make_delivery(shop, promo, recipient, "push", "sent", due=due, latency_ms=1000)
    make_delivery(shop, promo, recipient, "push", "dead", due=due)
    make_delivery(shop, promo, recipient, "push", "suppressed", due=due)
    make_delivery(shop, order, recipient, "sms", "delivered", due=due, latency_ms=2000, reached=("delivered",),
                  priority="low")
    return due


def figures(deliveries, sent, delivered, opened, clicked, failed, bounced, rates, latency):
    return {"deliveries": deliveries, "sent": sent, "delivered": delivered, "opened": opened, "clicked": clicked,
            "failed": failed, "bounced": bounced, "delivery_rate": rates[0], "open_rate": rates[1],
            "click_rate": rates[2], "latency_ms": dict(zip(("p50", "p95", "p99"), latency))}


# percentile_cont over [100, 200, 300, 400, 500, 1000, 2000]: p50 the 4th; p95 at 5.7 → 1000 + 0.7 × 1000.
TOTALS = figures(10, 7, 5, 2, 1, 2, 1, (0.7143, 0.4, 0.2), (400.0, 1700.0, 1940.0))
EMAIL = figures(6, 5, 4, 2, 1, 1, 1, (0.8, 0.5, 0.25), (300.0, 480.0, 496.0))
PUSH = figures(3, 1, 0, 0, 0, 1, 0, (0.0, None, None), (1000.0, 1000.0, 1000.0))
SMS = figures(1, 1, 1, 0, 0, 0, 0, (1.0, 0.0, 0.0), (2000.0, 2000.0, 2000.0))
ORDER_SHIPPED = figures(7, 6, 5, 2, 1, 1, 1, (0.8333, 0.4, 0.2), (350.0, 1625.0, 1925.0))


def test_given_ten_deliveries_when_the_shop_reads_its_stats_then_it_gets_counts_rates_and_percentiles(shop, known):
    response = shop.client.get("/api/v1/stats")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["producer"] == "shop"
    assert body["totals"] == TOTALS


def test_given_ten_deliveries_when_the_shop_reads_its_stats_then_each_channel_and_type_has_its_own(shop, known):
    body = shop.client.get("/api/v1/stats").json()

    assert body["by_channel"] == [{"channel": "email", **EMAIL}, {"channel": "push", **PUSH},
                                  {"channel": "sms", **SMS}]
    assert body["by_type"] == [{"type": "order_shipped", **ORDER_SHIPPED},
                               {"type": "promo", **figures(3, 1, 0, 0, 0, 1, 0, (0.0, None, None),
                                                           (1000.0, 1000.0, 1000.0))}]


@pytest.mark.parametrize("query, totals, channels, type_keys", [
    ("channel=email", EMAIL, ["email"], ["order_shipped"]),
    ("type=promo", PUSH, ["push"], ["promo"]),
    ("priority=low", SMS, ["sms"], ["order_shipped"]),
    ("channel=email&type=promo", figures(0, 0, 0, 0, 0, 0, 0, (None, None, None), (None, None, None)), [], []),
])
def test_given_ten_deliveries_when_filtered_then_only_the_matching_ones_count(shop, known, query, totals,
                                                                               channels, type_keys):
    body = shop.client.get(f"/api/v1/stats?{query}").json()

    assert body["totals"] == totals
    assert [group["channel"] for group in body["by_channel"]] == channels
    assert [group["type"] for group in body["by_type"]] == type_keys


def test_the_window_defaults_to_the_last_24_hours_and_selects_by_due_time(shop, types, recipient):
    now = timezone.now()
    for hours_ago in (1, 23, 25):
        make_delivery(shop, types["promo"], recipient, "push", "sent", due=now - timedelta(hours=hours_ago),
                      latency_ms=10)

    default = shop.client.get("/api/v1/stats").json()
    earlier = shop.client.get("/api/v1/stats", {"since": (now - timedelta(hours=26)).isoformat(),
                                                 "until": (now - timedelta(hours=24)).isoformat()}).json()

    assert default["totals"]["deliveries"] == 2
    assert earlier["totals"]["deliveries"] == 1
    assert earlier["since"] == (now - timedelta(hours=26)).isoformat().replace("+00:00", "Z")


def test_a_window_without_deliveries_answers_zeros_and_nulls(shop):
    body = shop.client.get("/api/v1/stats").json()

    assert body["totals"] == figures(0, 0, 0, 0, 0, 0, 0, (None, None, None), (None, None, None))
    assert body["by_channel"] == body["by_type"] == []


def test_a_producer_sees_only_its_own_notifications_and_an_admin_key_sees_everyones(shop, known, types, recipient):
    other, other_key = make_producer("blog", ["send"])
    make_delivery(other, types["promo"], recipient, "push", "sent", due=known, latency_ms=50)
    _, admin_key = make_producer("ops", ["send", "admin"])

    mine = shop.client.get("/api/v1/stats").json()
    theirs = client_for(other_key).get("/api/v1/stats").json()
    everyone = client_for(admin_key).get("/api/v1/stats").json()

    assert mine["totals"] == TOTALS
    assert (theirs["producer"], theirs["totals"]["deliveries"], theirs["totals"]["latency_ms"]["p50"]) == (
        "blog", 1, 50.0)
    assert (everyone["producer"], everyone["totals"]["deliveries"], everyone["totals"]["sent"]) == (None, 11, 8)


@pytest.mark.parametrize("query, field", [
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"until": "2000-01-01T00:00:00Z", "since": "2000-03-01T00:00:00Z"}, "since"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:01Z"}, "since"),  # 31 days and a second
    ({"channel": "fax"}, "channel"),
    ({"priority": "urgent"}, "priority"),
    ({"type": "no_such_type"}, "type"),
])
def test_a_bad_query_field_is_a_400_naming_it(shop, query, field):
    response = shop.client.get("/api/v1/stats", query)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_a_future_since_without_until_is_a_400_naming_since(shop):
    response = shop.client.get("/api/v1/stats", {"since": (timezone.now() + timedelta(hours=1)).isoformat()})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["since"]


def test_a_window_of_exactly_31_days_is_allowed(shop):
    response = shop.client.get("/api/v1/stats", {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"})

    assert response.status_code == 200, response.json()


def test_the_figures_take_one_query_however_many_deliveries_channels_and_types(shop, known,
                                                                               django_assert_num_queries):
    with django_assert_num_queries(2):  # SET LOCAL work_mem, then the figures
        stats = delivery_stats(StatsFilter(since=known - timedelta(hours=1), until=timezone.now(),
                                           producer_id=shop.id))

    assert stats["totals"]["deliveries"] == 10


def test_the_endpoint_takes_the_key_the_type_and_the_figures_query(shop, known, django_assert_max_num_queries):
    # The key and the type key (each cached after), SET LOCAL work_mem, the figures.
    with django_assert_max_num_queries(4):
        response = shop.client.get("/api/v1/stats?type=promo")

    assert response.json()["totals"]["deliveries"] == 3


def test_a_delivery_made_one_at_a_time_copies_its_notifications_due_time_producer_and_type(shop, types, recipient):
    due = timezone.now() - timedelta(minutes=5)
    notification = Notification.objects.create(producer=shop, type=types["promo"], recipient=recipient,
                                               priority="high", due_at=due)

    delivery = Delivery.objects.create(notification=notification, channel="push", priority="high", target="t",
                                       next_attempt_at=due)

    delivery.refresh_from_db()
    assert (delivery.notification_due_at, delivery.producer_id, delivery.type_id) == (due, shop.id,
                                                                                      types["promo"].id)
