"""The lookups the pipeline and the webhooks do by something other than a primary key have an index.

Each test asks PostgreSQL for the plan of the exact query the code runs, with sequential scans priced
out, and expects the named index in it: without the index the plan is a sequential scan whatever the
setting.
"""
import pytest
from django.db import connection, transaction

from notifier.models import Delivery, DeliveryAttempt, Notification, Producer, Recipient
from notifier.pipeline.cancel import by_idempotency_key
from notifier.selectors import dead_letters, sandbox_messages

pytestmark = pytest.mark.django_db


def plan_of(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_recording_sms_opt_outs_by_number_uses_the_phone_index():
    # pipeline/dispatch.py, targets_gone: Recipient.objects.filter(phone__in=phones, sms_opted_out_at=None)
    plan = plan_of(Recipient.objects.filter(phone__in=["+14155550100", "+14155550101"], sms_opted_out_at=None))

    assert "recipient_phone" in plan, plan


@pytest.mark.parametrize("filters, index", [
    ({}, "sandbox_producer"),
    ({"channel": "push"}, "sandbox_producer"),
    ({"user_id": "u_42"}, "sandbox_producer_user"),
    ({"user_id": "u_42", "channel": "push"}, "sandbox_producer_user"),
])
def test_listing_a_producers_sandbox_messages_uses_one_index_in_order(filters, index):
    producer, _ = Producer.create_with_key("shop", ["send"])

    plan = plan_of(sandbox_messages(producer, **filters))

    assert f" {index} " in plan, plan
    assert "Sort" not in plan, plan


def test_finding_a_delivery_by_provider_message_id_uses_an_index():
    # webhooks/twilio.py: a status callback names the message by its SID.
    plan = plan_of(Delivery.objects.filter(provider_message_id="SM0123456789abcdef0123456789abcdef"))

    assert "delivery_provider_msg" in plan, plan


def test_cancelling_by_idempotency_key_finds_the_notifications_by_an_index():
    # pipeline/cancel.py, notifications_cancel_by_key: a producer's notifications made under one key.
    producer, _ = Producer.create_with_key("shop", ["send"])
    plan = plan_of(Notification.objects.filter(by_idempotency_key(producer, "order-789")))

    assert "notification_idempotency_key" in plan, plan


@pytest.mark.parametrize("filters", [{}, {"channel": "email"}, {"error_code": "503"}])
def test_listing_a_producers_dead_letters_newest_first_uses_the_dead_letter_index(filters):
    # selectors.dead_letters, paged by api/deadletters.py newest first. The producer is a column of the
    # notification, not of the delivery, so no one index serves both: depending on the statistics the
    # planner walks delivery_dead in order and checks each row's producer, or starts from the producer's
    # notifications and sorts their dead deliveries (found through delivery_dead too). With an error code
    # it may also start from the few attempts that carry that code (by attempt_delivery) and
    # read their deliveries by key. Never a scan of the deliveries.
    producer, _ = Producer.create_with_key("shop", ["send"])

    plan = plan_of(dead_letters(producer, **filters).order_by("-failed_at", "-id")[:51])

    assert "Seq Scan on notifier_delivery " not in plan, plan
    from_attempts = "using attempt_delivery" in plan and "using notifier_delivery_pkey" in plan
    assert " delivery_dead " in plan or ("error_code" in filters and from_attempts), plan


def test_a_dead_letters_attempt_history_is_read_by_an_index():
    plan = plan_of(DeliveryAttempt.objects.filter(delivery_id__in=[1, 2, 3]).order_by("delivery_id", "number"))

    assert "attempt_delivery" in plan, plan


@pytest.mark.parametrize("producer", [False, True])
def test_the_stats_window_is_read_by_the_due_time_index(producer):
    # notifier/stats.py, delivery_stats: one query over the deliveries due in the window.
    from datetime import timedelta

    from django.utils import timezone

    from notifier.stats import StatsFilter, stats_query

    until = timezone.now()
    sql, params = stats_query(StatsFilter(since=until - timedelta(hours=24), until=until,
                                          producer_id=1 if producer else None))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "delivery_due_at" in plan, plan


def test_no_index_repeats_the_leading_columns_of_another():
    # Every index costs each insert and update of its table's rows: an index whose columns lead another
    # plain index of the same table (Django's own index on a foreign key, say, beside a composite index
    # starting with that key) serves no lookup the other does not, so it is only cost (migration 0023).
    # Unique and partial indexes say more than their columns, and the varchar_pattern_ops twins of unique
    # text columns serve LIKE: those are not compared.
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT a.indexrelid::regclass::text, b.indexrelid::regclass::text
            FROM pg_index a JOIN pg_index b ON a.indrelid = b.indrelid AND a.indexrelid <> b.indexrelid
            WHERE NOT a.indisunique AND a.indpred IS NULL AND b.indpred IS NULL
              AND a.indclass::text = array_to_string((string_to_array(b.indclass::text, ' '))[1:a.indnatts], ' ')
              AND (b.indkey::text || ' ') LIKE (a.indkey::text || ' %')
              AND a.indrelid::regclass::text LIKE 'notifier\\_%'""")
        repeated = cursor.fetchall()

    assert repeated == [], f"(index, covered by): {repeated}"


@pytest.mark.parametrize("queryset, index", [
    (lambda: Notification.objects.filter(recipient_id=1), "notification_recipient"),
    (lambda: Notification.objects.filter(producer_id=1), "notification_producer"),
    (lambda: DeliveryAttempt.objects.filter(delivery_id=1), "attempt_delivery"),
])
def test_a_foreign_key_lookup_uses_the_composite_index_that_leads_with_it(queryset, index):
    # What Django runs to cascade a recipient's deletion, or to protect a producer with notifications.
    plan = plan_of(queryset())

    assert index in plan, plan
