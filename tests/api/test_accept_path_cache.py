"""The accept path reads producer keys and notification types from a per-process cache (process_cache.py):
one round trip fewer each per request, and changes still apply at once in the process that made them."""
import time

from notifier.models import Notification, NotificationType
from notifier.process_cache import ProcessCache

BODY = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "789"}}


def test_a_repeated_single_recipient_post_takes_one_statement(api, order_type, reachable_user,
                                                             django_assert_num_queries):
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202

    # The recipient and the insert in one statement: no key or type lookup (cached), no BEGIN/COMMIT
    # (nothing to make atomic). tests/api/test_accept_round_trips.py counts the Redis round trips.
    with django_assert_num_queries(1):
        assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202


def test_with_an_idempotency_key_the_request_is_one_transaction(api, order_type, reachable_user,
                                                                django_assert_num_queries):
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202

    # BEGIN, the key's advisory lock, the key claimed under a savepoint (3), the recipient and the insert
    # (one statement), the stored answer, COMMIT
    with django_assert_num_queries(8) as captured:
        assert api.post("/api/v1/notifications", {**BODY, "idempotency_key": "k1"}, format="json").status_code == 202

    statements = [q["sql"] for q in captured.captured_queries]
    # (inside the test's own transaction, atomic() opens a savepoint where production sends BEGIN)
    assert statements[0].startswith(("BEGIN", "SAVEPOINT"))


def test_a_deactivated_producer_is_refused_at_once_though_its_key_was_cached(api, producer, order_type,
                                                                            reachable_user):
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202

    producer.is_active = False
    producer.save()

    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 401


def test_a_rotated_key_stops_working_at_once(api, producer, order_type, reachable_user):
    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 202

    producer.rotate_key()
    producer.save()

    assert api.post("/api/v1/notifications", BODY, format="json").status_code == 401


def test_a_deleted_type_is_unknown_at_once(api, order_type, reachable_user):
    other = NotificationType.objects.create(key="flash_sale", default_channels=["in_app"])
    assert api.post("/api/v1/notifications", {**BODY, "type": "flash_sale"}, format="json").status_code == 202

    Notification.objects.filter(type=other).delete()
    other.delete()
    response = api.post("/api/v1/notifications", {**BODY, "type": "flash_sale"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["type"] == ["Unknown notification type 'flash_sale'."]


def test_entries_expire_after_the_configured_seconds(settings):
    settings.NOTIFIER_PROCESS_CACHE_SECONDS = 0.05
    cache, loads = ProcessCache(), []

    def load():
        loads.append(1)
        return len(loads)

    assert cache.get("k", load) == 1
    assert cache.get("k", load) == 1
    time.sleep(0.06)
    assert cache.get("k", load) == 2


def test_unknown_keys_are_not_cached_so_they_cannot_fill_it():
    cache = ProcessCache()
    assert cache.get("nobody", lambda: None) is None
    assert cache.get("nobody", lambda: "created since") == "created since"


def test_zero_seconds_turns_it_off(settings):
    settings.NOTIFIER_PROCESS_CACHE_SECONDS = 0
    cache, loads = ProcessCache(), []
    cache.get("k", lambda: loads.append(1) or 1)
    cache.get("k", lambda: loads.append(1) or 1)
    assert len(loads) == 2
