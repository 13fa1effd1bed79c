"""segment_members_store at the inline limit on PostgreSQL: 100,000 user ids is more than psycopg may bind
in one statement (65,535), so the INSERT … SELECT goes in batches; it must still be one set-based
statement per batch, not a query per id, and quick enough for a create request."""
import time

import pytest
from django.db import connection

from notifier.campaigns.segments import segment_count, segment_members_store
from notifier.models import Campaign, CampaignMember, NotificationType, Producer, Recipient

pytestmark = pytest.mark.django_db


def recipients_make(count: int, prefix: str) -> None:
    """`count` recipients in one statement (bulk_create of 100,000 would take most of the test's time)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {Recipient._meta.db_table} (user_id, email, phone, timezone, language, attributes,
                    channel_preferences, type_preferences, marketing_opt_in, digest, created_at, updated_at)
                SELECT %s || g, '', '', 'UTC', 'en', '{{}}', '{{}}', '{{}}', false, 'realtime', now(), now()
                FROM generate_series(1, %s) g""", [prefix, count])


def test_it_stores_100000_members_in_batches_and_leaves_unknown_ids_out(django_assert_max_num_queries):
    producer, _ = Producer.create_with_key("shop", ["send"])
    campaign = Campaign.objects.create(producer=producer, name="big", segment={"user_ids": []},
                                       type=NotificationType.objects.create(key="promo", category="marketing"))
    recipients_make(99_000, "u_")
    user_ids = [f"u_{n}" for n in range(1, 99_001)] + [f"stranger_{n}" for n in range(1000)]

    started = time.monotonic()
    with django_assert_max_num_queries(105):  # 100 batches of 1,000, a savepoint and the count
        members = segment_members_store(campaign, user_ids)
    elapsed = time.monotonic() - started

    assert members == 99_000 and len(set(user_ids)) - members == 1000
    assert CampaignMember.objects.filter(campaign=campaign).count() == 99_000
    assert segment_count(campaign) == 99_000
    assert not Recipient.objects.filter(user_id__startswith="stranger_").exists()
    assert elapsed < 30, f"{elapsed:.1f} s"  # a bound against a query per id (minutes), not a benchmark
