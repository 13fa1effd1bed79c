"""Lists are cursor-paginated and the notification detail shows a bounded page of its deliveries: no
request does work that grows with the size of a table (keyset pages: one query whatever the page)."""
import pytest
from django.utils import timezone

from notifier.channels.base import Target
from notifier.models import Delivery, Notification, NotificationType, Template
from notifier.pipeline.deliveries import deliveries_build
from tests.conftest import make_order_type

pytestmark = pytest.mark.django_db


def walk(client, path, key, limit, **filters):
    """Every page of a list, following next_cursor; returns the items and how many pages it took."""
    items, pages, cursor = [], 0, None
    while True:
        params = {**filters, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body[key]) <= limit
        items += body[key]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


class TestNotificationTypes:
    def test_pages_walk_every_type_once_in_key_order(self, admin_api):
        for index in range(7):
            NotificationType.objects.create(key=f"type_{index}", default_channels=["email"])

        types, pages = walk(admin_api, "/api/v1/notification-types", "notification_types", limit=3)

        assert [t["key"] for t in types] == [f"type_{i}" for i in range(7)] and pages == 3

    def test_a_page_is_50_by_default_and_200_at_most(self, admin_api):
        NotificationType.objects.bulk_create(
            NotificationType(key=f"type_{index:03}", default_channels=["email"]) for index in range(60))

        first = admin_api.get("/api/v1/notification-types").json()
        too_many = admin_api.get("/api/v1/notification-types?limit=201")

        assert len(first["notification_types"]) == 50 and first["next_cursor"]
        assert too_many.status_code == 400 and "limit" in too_many.json()["error"]["fields"]

    @pytest.mark.parametrize("cursor", ["nope", "WzFd", "WyJhIiwgImIiXQ", "WyJhXHUwMDAwIl0"])
    def test_a_cursor_this_api_did_not_return_is_a_400_naming_it(self, admin_api, cursor):
        # not base64 JSON; [1]; ["a", "b"]; ["a\u0000"]
        response = admin_api.get(f"/api/v1/notification-types?cursor={cursor}")

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["cursor"]

    def test_a_page_costs_the_same_queries_however_many_types_there_are(self, admin_api,
                                                                        django_assert_max_num_queries):
        NotificationType.objects.bulk_create(
            NotificationType(key=f"type_{index:04}", default_channels=["email"]) for index in range(500))
        cursor = admin_api.get("/api/v1/notification-types?limit=200").json()["next_cursor"]

        with django_assert_max_num_queries(2):  # the producer key, the page
            admin_api.get(f"/api/v1/notification-types?limit=200&cursor={cursor}")


class TestTemplates:
    def test_pages_walk_every_template_version_once(self, admin_api):
        make_order_type(key="a_type", languages=("en", "de"))
        make_order_type(key="b_type")
        for version in (2, 3):
            Template.objects.filter(type__key="a_type", channel="sms", language="en", version=version - 1).update(
                active=False)
            Template.objects.create(type=NotificationType.objects.get(key="a_type"), channel="sms", language="en",
                                    body=f"v{version}", version=version)

        templates, pages = walk(admin_api, "/api/v1/templates", "templates", limit=4)

        listed = [(t["type"], t["channel"], t["language"], t["version"]) for t in templates]
        assert len(listed) == len(set(listed)) == Template.objects.count() == 14 and pages == 4
        assert listed == sorted(listed, key=lambda t: (t[0], t[1], t[2], -t[3]))  # newest version first

    def test_the_type_filter_pages_too(self, admin_api):
        make_order_type(key="a_type", languages=("en", "de"))
        make_order_type(key="b_type")

        templates, _ = walk(admin_api, "/api/v1/templates", "templates", limit=3, type="b_type")

        assert {t["type"] for t in templates} == {"b_type"} and len(templates) == 4


class TestNotificationDeliveries:
    @pytest.fixture
    def notification(self, producer, order_type, reachable_user):
        notification = Notification.objects.create(producer=producer, type=order_type, recipient=reachable_user,
                                                   priority="high", due_at=timezone.now())
        targets = [Target(f"token-{index:03}") for index in range(250)]
        Delivery.objects.bulk_create(deliveries_build(notification, "push", targets, None,
                                                      next_attempt_at=timezone.now()))
        return notification

    def test_the_detail_shows_the_first_100_deliveries_and_a_cursor_to_the_rest(self, api, notification):
        body = api.get(f"/api/v1/notifications/{notification.id}").json()

        assert [d["target"] for d in body["deliveries"]] == [f"token-{i:03}" for i in range(100)]
        rest, pages = walk(api, f"/api/v1/notifications/{notification.id}/deliveries", "deliveries", limit=100)
        assert [d["target"] for d in rest] == [f"token-{i:03}" for i in range(250)] and pages == 3
        first_rest = api.get(f"/api/v1/notifications/{notification.id}/deliveries",
                             {"cursor": body["deliveries_next_cursor"], "limit": 200}).json()
        assert [d["target"] for d in first_rest["deliveries"]] == [f"token-{i:03}" for i in range(100, 250)]

    def test_the_detail_costs_the_same_queries_however_many_deliveries(self, api, notification,
                                                                       django_assert_max_num_queries):
        with django_assert_max_num_queries(4):  # the producer key, the notification, a page of deliveries, their events
            assert api.get(f"/api/v1/notifications/{notification.id}").status_code == 200

    def test_another_producers_deliveries_are_not_found(self, notification):
        from rest_framework.test import APIClient

        from tests.conftest import make_producer

        _, key = make_producer("other")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

        assert client.get(f"/api/v1/notifications/{notification.id}/deliveries").status_code == 404
