"""The in-app inbox API: pages, the unread badge, read/archive, and who may see what."""
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.inbox import inbox_purge
from notifier.models import InboxItem, Notification, Producer, Recipient
from tests.conftest import make_order_type

pytestmark = pytest.mark.django_db


def given_inbox(user_id="u_1", count=3, read=0):
    """A user with `count` inbox items, the first `read` of them read; returns the notifications, newest
    first."""
    recipient, _ = Recipient.objects.get_or_create(user_id=user_id)
    notification_type = make_order_type(key=f"t_{user_id}", channels=("in_app",))
    producer = Producer.objects.first() or Producer.create_with_key("p", ["send"])[0]
    base = timezone.now() - timedelta(minutes=count)
    notifications = []
    for index in range(count):
        notification = Notification.objects.create(producer=producer, type=notification_type, recipient=recipient,
                                                   priority="high", due_at=base, data={"n": index})
        InboxItem.objects.create(recipient=recipient, notification=notification, title=f"item {index}",
                                 read_at=timezone.now() if index < read else None)
        # created_at is auto_now_add: spread the items one minute apart, oldest first.
        InboxItem.objects.filter(notification=notification).update(created_at=base + timedelta(minutes=index))
        notifications.append(notification)
    return list(reversed(notifications))


def token_client(api, user_id):
    token = api.post(f"/api/v1/users/{user_id}/token").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class TestReading:
    def test_the_inbox_lists_newest_first_with_the_unread_count(self, api):
        notifications = given_inbox(count=3, read=1)

        body = api.get("/api/v1/users/u_1/notifications").json()

        assert [n["id"] for n in body["notifications"]] == [str(n.id) for n in notifications]
        assert [n["title"] for n in body["notifications"]] == ["item 2", "item 1", "item 0"]
        assert [n["read"] for n in body["notifications"]] == [False, False, True]
        assert body["unread_count"] == 2 and body["unread_count_capped"] is False
        assert body["next_cursor"] is None

    def test_cursor_pages_walk_the_whole_inbox_once(self, api):
        given_inbox(count=7)

        seen, cursor = [], ""
        while True:
            body = api.get(f"/api/v1/users/u_1/notifications?limit=3&cursor={cursor}").json()
            seen += [n["title"] for n in body["notifications"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break

        assert seen == [f"item {i}" for i in range(6, -1, -1)]

    def test_items_created_in_the_same_instant_are_neither_skipped_nor_repeated(self, api):
        given_inbox(count=5)
        InboxItem.objects.update(created_at=timezone.now())

        first = api.get("/api/v1/users/u_1/notifications?limit=2").json()
        rest = api.get(f"/api/v1/users/u_1/notifications?limit=10&cursor={first['next_cursor']}").json()

        titles = [n["title"] for n in first["notifications"] + rest["notifications"]]
        assert sorted(titles) == [f"item {i}" for i in range(5)]

    def test_paging_one_by_one_through_items_of_the_same_instant_sees_each_once(self, api):
        given_inbox(count=5)
        InboxItem.objects.update(created_at=timezone.now())  # every item ties on created_at

        titles, cursor = [], ""
        for _ in range(10):
            body = api.get(f"/api/v1/users/u_1/notifications?limit=1&cursor={cursor}").json()
            titles += [item["title"] for item in body["notifications"]]
            cursor = body["next_cursor"]
            if not cursor:
                break

        assert sorted(titles) == [f"item {i}" for i in range(5)]
        assert len(titles) == 5

    def test_a_bad_cursor_or_limit_is_400_naming_it(self, api):
        given_inbox(count=1)

        assert "cursor" in api.get("/api/v1/users/u_1/notifications?cursor=nonsense").json()["error"]["fields"]
        assert "limit" in api.get("/api/v1/users/u_1/notifications?limit=1000").json()["error"]["fields"]

    def test_the_first_page_and_badge_take_three_queries_whatever_the_inbox_size(
        self, api, django_assert_max_num_queries
    ):
        given_inbox(count=30, read=5)

        with django_assert_max_num_queries(4):  # producer key, recipient, page, unread count
            body = api.get("/api/v1/users/u_1/notifications?limit=20").json()

        assert len(body["notifications"]) == 20 and body["unread_count"] == 25

    def test_an_app_reads_its_first_page_and_badge_in_two_queries(self, api, django_assert_num_queries):
        given_inbox(count=30, read=5)
        token = api.post("/api/v1/users/u_1/token").json()["token"]
        app = APIClient()
        app.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

        with django_assert_num_queries(2):  # the token names its recipient: page, unread count
            body = app.get("/api/v1/users/u_1/notifications?limit=20").json()

        assert len(body["notifications"]) == 20 and body["unread_count"] == 25

    def test_the_unread_badge_alone(self, api, django_assert_max_num_queries):
        given_inbox(count=4, read=1)

        with django_assert_max_num_queries(3):
            body = api.get("/api/v1/users/u_1/notifications/unread-count").json()

        assert body == {"unread_count": 3, "unread_count_capped": False}

    def test_a_huge_unread_count_is_capped_not_counted(self, api):
        given_inbox(count=6)

        with override_settings(NOTIFIER_INBOX_UNREAD_COUNT_CAP=4):
            body = api.get("/api/v1/users/u_1/notifications/unread-count").json()

        assert body == {"unread_count": 4, "unread_count_capped": True}

    def test_the_badge_query_uses_the_unread_index(self, db):
        from django.db import connection

        given_inbox(count=3)
        recipient = Recipient.objects.get(user_id="u_1")
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            query = InboxItem.objects.filter(recipient=recipient, read_at=None, archived_at=None)[:1000].query
            sql, params = query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")

        assert "inbox_unread" in plan


class TestChanging:
    def test_reading_an_item_lowers_the_badge_and_unreading_raises_it(self, api):
        newest = given_inbox(count=2)[0]

        read = api.patch(f"/api/v1/users/u_1/notifications/{newest.id}", {"read": True}, format="json")
        unread = api.patch(f"/api/v1/users/u_1/notifications/{newest.id}", {"read": False}, format="json")

        assert read.status_code == 200
        assert read.json()["notification"]["read"] is True and read.json()["unread_count"] == 1
        assert unread.json()["unread_count"] == 2

    def test_an_archived_item_leaves_the_inbox_and_its_badge_but_stays_in_the_archive(self, api):
        newest = given_inbox(count=2)[0]

        api.patch(f"/api/v1/users/u_1/notifications/{newest.id}", {"archived": True}, format="json")

        inbox = api.get("/api/v1/users/u_1/notifications").json()
        archive = api.get("/api/v1/users/u_1/notifications?archived=true").json()
        assert [n["id"] for n in inbox["notifications"]] != [str(newest.id)]
        assert str(newest.id) not in [n["id"] for n in inbox["notifications"]]
        assert [n["id"] for n in archive["notifications"]] == [str(newest.id)]
        assert inbox["unread_count"] == 1

    def test_mark_all_read_clears_the_badge(self, api):
        given_inbox(count=3, read=1)

        body = api.post("/api/v1/users/u_1/notifications/mark-all-read").json()

        assert body == {"marked_read": 2, "unread_count": 0, "unread_count_capped": False}
        assert not InboxItem.objects.filter(read_at=None).exists()

    @pytest.mark.parametrize("body", [{}, {"read": "maybe"}, {"starred": True}])
    def test_a_bad_change_is_400(self, api, body):
        newest = given_inbox(count=1)[0]

        response = api.patch(f"/api/v1/users/u_1/notifications/{newest.id}", body, format="json")

        assert response.status_code == 400

    def test_items_past_the_retention_are_purged_in_batches(self, db):
        given_inbox(count=5)
        InboxItem.objects.filter(title__in=["item 0", "item 1", "item 2"]).update(
            created_at=timezone.now() - timedelta(days=91))

        deleted = inbox_purge(batch_size=2)

        assert deleted == 3
        assert sorted(InboxItem.objects.values_list("title", flat=True)) == ["item 3", "item 4"]


class TestWhoMaySeeWhat:
    """A recipient token reaches its own inbox and nothing else: any other user's ids are 404."""

    ENDPOINTS = [
        ("get", "/api/v1/users/{user}/notifications", None),
        ("get", "/api/v1/users/{user}/notifications/unread-count", None),
        ("post", "/api/v1/users/{user}/notifications/mark-all-read", None),
        ("patch", "/api/v1/users/{user}/notifications/{item}", {"read": True}),
        ("patch", "/api/v1/users/{user}/notifications/{item}", {"archived": True}),
        ("get", "/api/v1/users/{user}/notifications/stream", None),
        ("get", "/api/v1/users/{user}/notification-preferences", None),
        ("put", "/api/v1/users/{user}/notification-preferences", {"channels": {"push": False}}),
        ("patch", "/api/v1/users/{user}/notification-preferences", {"channels": {"push": False}}),
    ]

    @pytest.mark.parametrize("method, path, body", ENDPOINTS)
    def test_a_recipient_token_reaches_its_own_inbox(self, api, method, path, body):
        mine = given_inbox("alice", count=1)[0]
        client = token_client(api, "alice")

        with override_settings(NOTIFIER_INBOX_STREAM_SECONDS=0):
            response = getattr(client, method)(path.format(user="alice", item=mine.id), body, format="json")

        assert response.status_code == 200

    @pytest.mark.parametrize("method, path, body", ENDPOINTS)
    def test_another_users_ids_are_404_to_a_recipient_token(self, api, method, path, body):
        given_inbox("alice", count=1)
        theirs = given_inbox("bob", count=1)[0]
        client = token_client(api, "alice")

        response = getattr(client, method)(path.format(user="bob", item=theirs.id), body, format="json")

        assert response.status_code == 404
        item = InboxItem.objects.get(notification=theirs)
        assert (item.read_at, item.archived_at) == (None, None)
        assert Recipient.objects.get(user_id="bob").channel_preferences == {}

    @pytest.mark.parametrize("method", ["put", "patch"])
    def test_a_recipient_token_cannot_create_another_users_preferences(self, api, method):
        client = token_client(api, "alice")

        response = getattr(client, method)("/api/v1/users/carol/notification-preferences",
                                           {"channels": {"push": False}}, format="json")

        assert response.status_code == 404
        assert not Recipient.objects.filter(user_id="carol").exists()

    def test_another_users_item_under_ones_own_path_is_404(self, api):
        given_inbox("alice", count=1)
        theirs = given_inbox("bob", count=1)[0]
        client = token_client(api, "alice")

        read = client.patch(f"/api/v1/users/alice/notifications/{theirs.id}", {"read": True}, format="json")
        archived = client.patch(f"/api/v1/users/alice/notifications/{theirs.id}", {"archived": True},
                                format="json")

        assert (read.status_code, archived.status_code) == (404, 404)
        item = InboxItem.objects.get(notification=theirs)
        assert (item.read_at, item.archived_at) == (None, None)

    @pytest.mark.parametrize("method, path, body", ENDPOINTS)
    def test_no_credentials_is_401(self, method, path, body, db):
        mine = given_inbox("alice", count=1)[0]

        response = getattr(APIClient(), method)(path.format(user="alice", item=mine.id), body, format="json")

        assert response.status_code == 401

    def test_the_stream_takes_a_recipient_token_in_the_query_but_never_a_producer_key(self, api, producer):
        given_inbox("alice", count=1)
        token = api.post("/api/v1/users/alice/token").json()["token"]
        anonymous = APIClient()

        with override_settings(NOTIFIER_INBOX_STREAM_SECONDS=0):
            ok = anonymous.get(f"/api/v1/users/alice/notifications/stream?token={token}")
            other = anonymous.get(f"/api/v1/users/bob/notifications/stream?token={token}")
            events = b"".join(ok.streaming_content)
        key = anonymous.get(f"/api/v1/users/alice/notifications/stream?token={producer.key}")

        assert ok.status_code == 200 and ok["Content-Type"] == "text/event-stream; charset=utf-8"
        assert b'event: unread_count\ndata: {"unread_count":1,"unread_count_capped":false}' in events
        assert other.status_code == 404
        assert key.status_code == 401


@pytest.mark.parametrize("last_event_id", ["²", "99999999999999999999", "-1", "abc"])
def test_a_last_event_id_the_stream_did_not_send_replays_nothing(api, last_event_id):
    given_inbox("alice", count=1)

    with override_settings(NOTIFIER_INBOX_STREAM_SECONDS=0):
        response = api.get("/api/v1/users/alice/notifications/stream", HTTP_LAST_EVENT_ID=last_event_id)
        events = b"".join(response.streaming_content)

    assert response.status_code == 200
    assert b"event: notification" not in events and b"event: unread_count" in events
