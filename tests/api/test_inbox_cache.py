"""The inbox's read cache (notifier/inbox_cache.py): the first page and the badge from Redis on a hit, from
the rows on a miss, never stale after a write that committed, and PostgreSQL's answer when Redis is away.

Writes run inside django_capture_on_commit_callbacks(execute=True): a test's transaction never commits, and
the cache is invalidated after commit."""
import time
from datetime import timedelta

import orjson
import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from notifier import inbox_cache
from notifier.api import inbox as inbox_api
from notifier.api.auth import recipient_token_issue
from notifier.campaigns import fanout
from notifier.inbox import inbox_purge
from notifier.models import InboxItem, Recipient
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.redis_client import redis_client
from tests.api.test_inbox_api import given_inbox
from tests.campaigns.conftest import make_campaign, make_recipients
from tests.conftest import make_order_type
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db

PAGE = "/api/v1/users/u_1/notifications"
BADGE = "/api/v1/users/u_1/notifications/unread-count"
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: connecting is refused at once


@pytest.fixture
def app(db):
    """The app of user u_1, reading with its recipient token (the lean path)."""
    recipient, _ = Recipient.objects.get_or_create(user_id="u_1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue('u_1', recipient.id)}")
    return client


def titles(body) -> list[str]:
    return [item["title"] for item in body["notifications"]]


class TestHitAndMiss:
    def test_a_miss_reads_the_rows_and_the_next_read_is_served_from_redis_alone(self, app, django_assert_num_queries):
        given_inbox(count=3, read=1)

        with django_assert_num_queries(2):  # page, unread count
            first = app.get(PAGE)
        with django_assert_num_queries(0):
            second = app.get(PAGE)

        assert first.content == second.content
        assert titles(second.json()) == ["item 2", "item 1", "item 0"] and second.json()["unread_count"] == 2

    def test_the_lean_path_answers_what_drf_answers(self, app, api):
        given_inbox(count=25, read=3)

        cold = app.get(PAGE)  # a miss, through the lean path
        warm = app.get(PAGE + "?limit=20&archived=false")  # a hit
        inbox_cache.inbox_cache_reset()
        by_producer = api.get(PAGE + "?limit=20&cursor=")  # DRF's view, a miss

        assert cold.status_code == warm.status_code == by_producer.status_code == 200
        assert cold.content == warm.content == by_producer.content
        assert cold.json()["next_cursor"] and len(cold.json()["notifications"]) == 20
        for response in (cold, warm):
            assert response["Content-Type"] == by_producer["Content-Type"] == "application/json"
            assert response["Allow"] == by_producer["Allow"]

    def test_the_badge_is_cached_with_the_page(self, app, django_assert_num_queries):
        given_inbox(count=4, read=1)
        app.get(PAGE)

        with django_assert_num_queries(0):
            body = app.get(BADGE).json()

        assert body == {"unread_count": 3, "unread_count_capped": False}

    def test_other_pages_are_read_from_the_rows(self, app, django_assert_num_queries):
        given_inbox(count=5)
        app.get(PAGE)

        with django_assert_num_queries(2):
            assert titles(app.get(PAGE + "?limit=2").json()) == ["item 4", "item 3"]
        with django_assert_num_queries(2):
            assert app.get(PAGE + "?archived=true").json()["notifications"] == []

    def test_refusals_are_drfs_whatever_the_cache_holds(self, app, api):
        given_inbox(count=2)
        given_inbox(user_id="u_2", count=1)
        app.get(PAGE)  # u_1's page is cached

        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue('u_2', Recipient.objects.get(user_id='u_2').id)}")
        bad = APIClient()
        bad.credentials(HTTP_AUTHORIZATION="Bearer rt_forged")

        assert other.get(PAGE).status_code == 404  # another user's inbox: as if it did not exist
        assert bad.get(PAGE).status_code == 401
        assert APIClient().get(PAGE).status_code == 401
        assert app.get(PAGE, HTTP_ACCEPT="text/html").status_code == 406

    def test_an_entry_made_for_another_recipient_row_is_not_served(self, app):
        given_inbox(count=2)
        app.get(PAGE)
        # The user id now names another row (a database restored under this Redis, a user deleted and made
        # again): the entry is keyed by user id, and checked against the row it was made for.
        Recipient.objects.filter(user_id="u_1").update(user_id="u_gone")
        recipient = Recipient.objects.create(user_id="u_1")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue('u_1', recipient.id)}")

        assert client.get(PAGE).json()["notifications"] == []

    def test_no_cache_when_its_lifetime_is_zero(self, app, settings, django_assert_num_queries):
        settings.NOTIFIER_INBOX_CACHE_SECONDS = 0
        given_inbox(count=2)
        app.get(PAGE)

        with django_assert_num_queries(2):
            app.get(PAGE)
        assert redis_client().keys("notifier:inbox:*") == []

    def test_entries_expire(self, app):
        given_inbox(count=1)
        app.get(PAGE)

        ttl = redis_client().ttl(inbox_cache.user_key("u_1"))
        assert 0 < ttl <= 60


class TestEveryWriteDropsTheCachedRead:
    """A read after each kind of write (committed) sees it: the page and the badge."""

    def test_an_item_read(self, app, django_capture_on_commit_callbacks):
        notifications = given_inbox(count=2)
        assert app.get(PAGE).json()["unread_count"] == 2

        with django_capture_on_commit_callbacks(execute=True):
            assert app.patch(f"{PAGE}/{notifications[0].id}", {"read": True}, format="json").status_code == 200

        body = app.get(PAGE).json()
        assert body["unread_count"] == 1 and body["notifications"][0]["read"] is True
        assert app.get(BADGE).json()["unread_count"] == 1

    def test_an_item_marked_unread(self, app, django_capture_on_commit_callbacks):
        notifications = given_inbox(count=2, read=2)
        assert app.get(PAGE).json()["unread_count"] == 0

        with django_capture_on_commit_callbacks(execute=True):
            app.patch(f"{PAGE}/{notifications[1].id}", {"read": False}, format="json")

        assert app.get(PAGE).json()["unread_count"] == 1

    def test_an_item_archived_and_unarchived(self, app, django_capture_on_commit_callbacks):
        notifications = given_inbox(count=2)
        app.get(PAGE)

        with django_capture_on_commit_callbacks(execute=True):
            app.patch(f"{PAGE}/{notifications[0].id}", {"archived": True}, format="json")
        assert titles(app.get(PAGE).json()) == ["item 0"] and app.get(BADGE).json()["unread_count"] == 1

        with django_capture_on_commit_callbacks(execute=True):
            app.patch(f"{PAGE}/{notifications[0].id}", {"archived": False}, format="json")
        assert titles(app.get(PAGE).json()) == ["item 1", "item 0"]

    def test_mark_all_read(self, app, django_capture_on_commit_callbacks):
        given_inbox(count=3)
        app.get(BADGE)

        with django_capture_on_commit_callbacks(execute=True):
            app.post(f"{PAGE}/mark-all-read")

        assert app.get(BADGE).json()["unread_count"] == 0
        assert not any(item["read"] is False for item in app.get(PAGE).json()["notifications"])

    def test_a_dismissal_reported_by_the_app(self, app, django_capture_on_commit_callbacks):
        notifications = given_inbox(count=2)
        app.get(PAGE)

        with django_capture_on_commit_callbacks(execute=True):
            app.post(f"{PAGE}/{notifications[0].id}/events", {"event": "dismissed", "channel": "in_app"}, format="json")

        assert titles(app.get(PAGE).json()) == ["item 0"]

    def test_a_new_item_delivered(self, app, order_type, django_capture_on_commit_callbacks):
        recipient = Recipient.objects.get(user_id="u_1")
        assert app.get(PAGE).json()["notifications"] == []
        make_notification(order_type, recipient, channels=["in_app"])
        route_due("high")

        with django_capture_on_commit_callbacks(execute=True):
            deliver_due("in_app", "high")

        body = app.get(PAGE).json()
        assert titles(body) == ["Order shipped"] and body["unread_count"] == 1

    def test_items_a_campaign_chunk_inserts(self, producer, settings, django_capture_on_commit_callbacks):
        settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE = 10
        promo = make_order_type("spring_sale", channels=("in_app",), category="marketing", default_priority="low")
        recipients = make_recipients(3, prefix="fan")
        readers = [APIClient() for _ in recipients]
        for client, recipient in zip(readers, recipients):
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {recipient_token_issue(recipient.user_id, recipient.id)}")
            assert client.get(f"/api/v1/users/{recipient.user_id}/notifications").json()["unread_count"] == 0
        campaign = make_campaign(producer, promo)
        fanout.campaign_advance(campaign.id)

        with django_capture_on_commit_callbacks(execute=True):
            assert fanout.campaign_chunk_run(campaign.id, 1) == 3

        for client, recipient in zip(readers, recipients):
            assert client.get(f"/api/v1/users/{recipient.user_id}/notifications").json()["unread_count"] == 1

    def test_old_items_purged(self, app, django_capture_on_commit_callbacks):
        given_inbox(count=2)
        InboxItem.objects.update(created_at=timezone.now() - timedelta(days=400))
        assert app.get(BADGE).json()["unread_count"] == 2

        with django_capture_on_commit_callbacks(execute=True):
            assert inbox_purge() == 2

        assert app.get(BADGE).json()["unread_count"] == 0 and app.get(PAGE).json()["notifications"] == []

    def test_the_user_deleted(self, app, django_capture_on_commit_callbacks):
        given_inbox(count=2)
        recipient_id = Recipient.objects.get(user_id="u_1").id
        app.get(PAGE)

        with django_capture_on_commit_callbacks(execute=True):
            Recipient.objects.filter(user_id="u_1").delete()

        # The token still names the deleted row: its inbox is empty, not the cached one.
        assert app.get(PAGE).json()["notifications"] == []
        assert not InboxItem.objects.filter(recipient_id=recipient_id).exists()

    def test_the_user_renamed_in_the_admin(self, app, admin_user, django_capture_on_commit_callbacks):
        notifications = given_inbox(count=2)
        app.get(PAGE)  # cached under u_1, whose token keeps reading this recipient after the rename
        recipient = Recipient.objects.get(user_id="u_1")
        request = RequestFactory().post("/")
        request.user = admin_user

        class RenameForm:
            changed_data = ["user_id"]
            initial = {"user_id": "u_1"}

        recipient.user_id = "u_renamed"
        with django_capture_on_commit_callbacks(execute=True):
            site._registry[Recipient].save_model(request, recipient, RenameForm(), change=True)
        app.get(PAGE)  # cached again under u_1, for the renamed recipient
        with django_capture_on_commit_callbacks(execute=True):
            inbox_api.inbox.inbox_item_update(recipient, notifications[0].id, read=True)

        assert app.get(PAGE).json()["unread_count"] == 1


class TestRaces:
    def test_a_read_that_saw_the_rows_before_a_write_cannot_store_them_after_its_invalidation(
            self, app, django_capture_on_commit_callbacks):
        """The interleaving: the reader takes the generation and reads the rows (unread); the writer marks
        the item read, commits and invalidates; the reader then stores what it read. The store is refused,
        so the next read sees the item read."""
        notifications = given_inbox(count=1)
        recipient = Recipient.objects.get(user_id="u_1")
        compute = inbox_api._first_page_values

        def reader_then_writer(recipient_id):
            seen = compute(recipient_id)  # the rows as they were
            with django_capture_on_commit_callbacks(execute=True):
                inbox_api.inbox.inbox_item_update(recipient, notifications[0].id, read=True)
            return seen

        stale = inbox_cache.inbox_cached("u_1", recipient.id, inbox_cache.PAGE, lambda: reader_then_writer(recipient.id))

        assert orjson.loads(stale)["unread_count"] == 1  # that reader answered what it read, as without a cache
        body = app.get(PAGE).json()
        assert body["unread_count"] == 0 and body["notifications"][0]["read"] is True

    def test_a_read_that_began_before_an_entry_expired_cannot_store_after_it(self, app):
        """An entry's generation is gone with it; a user given a new one never gets an old value back."""
        given_inbox(count=1)
        recipient = Recipient.objects.get(user_id="u_1")
        compute = inbox_api._first_page_values

        def reader_then_expiry(recipient_id):
            seen = compute(recipient_id)
            redis_client().delete(inbox_cache.user_key("u_1"))
            app.get(BADGE)  # another reader gives the user a new generation
            return seen

        inbox_cache.inbox_cached("u_1", recipient.id, inbox_cache.PAGE, lambda: reader_then_expiry(recipient.id))

        assert redis_client().hget(inbox_cache.user_key("u_1"), "page") is None


class TestRedisAway:
    def test_reads_are_answered_from_the_rows_at_once(self, app, settings, django_assert_num_queries):
        given_inbox(count=3, read=1)
        settings.REDIS_URL = CLOSED_PORT_REDIS

        started = time.monotonic()
        with django_assert_num_queries(2):
            page = app.get(PAGE)
        badge = app.get(BADGE)  # the breaker is open now: Redis is not even asked
        elapsed = time.monotonic() - started

        assert page.status_code == badge.status_code == 200
        assert titles(page.json()) == ["item 2", "item 1", "item 0"] and page.json()["unread_count"] == 2
        assert badge.json()["unread_count"] == 2
        assert elapsed < settings.NOTIFIER_REDIS_TIMEOUT_SECONDS

    def test_a_write_redis_did_not_hear_of_drops_every_entry_once_it_answers(
            self, app, settings, django_capture_on_commit_callbacks, monkeypatch):
        notifications = given_inbox(count=2)
        assert app.get(PAGE).json()["unread_count"] == 2  # cached in the real Redis
        monkeypatch.setattr(inbox_cache, "_epoch_owed", 0)

        settings.REDIS_URL = CLOSED_PORT_REDIS
        with django_capture_on_commit_callbacks(execute=True):
            assert app.patch(f"{PAGE}/{notifications[0].id}", {"read": True}, format="json").status_code == 200
        assert app.get(PAGE).json()["unread_count"] == 1  # from the rows meanwhile
        settings.REDIS_URL = self.real_redis_url

        assert app.get(PAGE).json()["unread_count"] == 1  # the old entry is never served
        assert inbox_cache._epoch_owed == 0

    @pytest.fixture(autouse=True)
    def _real_redis_url(self, settings):
        self.real_redis_url = settings.REDIS_URL
