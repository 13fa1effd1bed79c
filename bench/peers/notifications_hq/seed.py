"""Seed the peer's database with the inbox bench/inbox_seed.py gives notifier: `--users` users
(inbox-u0, inbox-u1, …) with rows/users notifications each, one a second apart going back from now, one in
ten unread, "Order shipped" / "Order N ships with UPS." and the order's link in `data`. The actor of every
notification is one "shop" user (the library requires an actor).

Run from the peer's virtualenv with DATABASE_URL set; applies the library's migrations first (its indexes,
and no others), keeps a complete seed (reseeds when the row count differs), prints JSON {"rows", "seconds"}.

    DJANGO_SETTINGS_MODULE=bench.peers.notifications_hq.settings python -m bench.peers.notifications_hq.seed \
        --rows 10000000 --users 100000
"""
import argparse
import json
import time

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from notifications.models import Notification  # noqa: E402

PREFIX = "inbox-u"
SHOP = "bench-shop"


def users_create(users: int) -> int:
    """The users, made inside PostgreSQL; returns the id of inbox-u0 (inbox-uN has that id + N)."""
    User = get_user_model()
    table = User._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (password, is_superuser, username, first_name, last_name, email, is_staff, "
            f"is_active, date_joined) SELECT '!', false, %s || g, '', '', '', false, true, now() "
            f"FROM generate_series(0, %s) AS g ON CONFLICT (username) DO NOTHING", [PREFIX, users - 1])
        cursor.execute(f"SELECT id FROM {table} WHERE username = %s", [f"{PREFIX}0"])
        first = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM {table} WHERE username LIKE %s AND username = %s || (id - %s)",
                       [f"{PREFIX}%", PREFIX, first])
        assert cursor.fetchone()[0] == users, "inbox users must have consecutive ids (drop the database to reseed)"
    return first


def notifications_create(rows: int, users: int, first: int, chunk: int = 1_000_000) -> None:
    shop, _ = get_user_model().objects.get_or_create(username=SHOP)
    actor_type = ContentType.objects.get_for_model(shop).id
    table = Notification._meta.db_table
    columns = ("level, recipient_id, unread, actor_content_type_id, actor_object_id, verb, description, "
               "timestamp, public, deleted, emailed, data")
    values = (f"'info', {first} + g %% {users}, g %% 10 = 0, {actor_type}, '{shop.id}', 'Order shipped', "
              f"'Order ' || g || ' ships with UPS.', now() - g * interval '1 second', true, false, false, "
              f"'{{\"action_url\": \"/o/' || g || '\"}}'")
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        for start in range(0, rows, chunk):
            end = min(rows, start + chunk) - 1
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM generate_series({start}, {end}) AS g",
                           [])  # with params, so %% is the modulo operator
            print(f"peer seed: {end + 1:,} rows", flush=True)
        cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"ANALYZE {get_user_model()._meta.db_table}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    started = time.monotonic()
    call_command("migrate", verbosity=0)
    first = users_create(args.users)
    if Notification.objects.count() != args.rows:  # none yet, or a partial seed from an interrupted run
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {Notification._meta.db_table}")
        notifications_create(args.rows, args.users, first)
    print(json.dumps({"rows": args.rows, "seconds": round(time.monotonic() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
