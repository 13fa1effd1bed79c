"""Seed the inbox database (notifier_bench_inbox, kept between runs) with `--rows` inbox items and their
notifications: `--users` users with rows/users items each, newest first, one in ten unread. Run by the
inbox scenario with DATABASE_URL pointing at that database; prints JSON {"producer_key", "seconds"}.

The rows are generated inside PostgreSQL (INSERT … SELECT generate_series): the same bulk path as COPY
without shipping 20,000,000 rows through a client."""
import argparse
import json
import time
from pathlib import Path

import django

django.setup()

from django.db import connection, models  # noqa: E402

from bench import seed  # noqa: E402
from notifier.api.auth import recipient_token_issue  # noqa: E402
from notifier.models import InboxItem, Notification, Producer, Recipient  # noqa: E402

PREFIX = "inbox-u"


def _select_list(model, expressions: dict) -> tuple[str, str, list]:
    """Columns and SELECT expressions for every concrete field; unmapped ones get their default."""
    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if isinstance(field, models.AutoField) or (field.primary_key and field.column not in expressions
                                                    and field.get_internal_type().endswith("AutoField")):
            continue  # the database numbers it
        columns.append(f'"{field.column}"')
        if field.column in expressions:
            values.append(expressions[field.column])
        elif field.null:
            values.append("NULL")
        elif field.has_default():
            default = field.get_default()
            values.append("%s::jsonb" if isinstance(field, models.JSONField) else "%s")
            params.append(json.dumps(default) if isinstance(field, models.JSONField) else default)
        elif isinstance(field, (models.CharField, models.TextField)):
            values.append("''")
        else:
            raise SystemExit(f"inbox seed: no value for {model.__name__}.{field.name}; add it to the seed")
    return ", ".join(columns), ", ".join(values), params


def seed_rows(rows: int, users: int, chunk: int = 1_000_000) -> None:
    producer_id = Producer.objects.get(name="bench").id
    type_id = seed.bench_type().id
    ids = list(Recipient.objects.filter(user_id__startswith=PREFIX).order_by("id").values_list("id", flat=True))
    assert ids[-1] - ids[0] == len(ids) - 1 == users - 1, "inbox users must have consecutive ids"
    first = ids[0]
    n_cols, n_vals, n_params = _select_list(Notification, {
        "id": "md5('n' || g)::uuid", "producer_id": str(producer_id), "type_id": str(type_id),
        "recipient_id": f"{first} + g %% {users}", "data": "'{}'::jsonb", "channels": "'[\"in_app\"]'::jsonb",
        "priority": "'medium'", "status": "'delivered'", "decisions": "'[]'::jsonb",
        "due_at": "now() - g * interval '1 second'", "created_at": "now() - g * interval '1 second'",
    })
    i_cols, i_vals, i_params = _select_list(InboxItem, {
        "recipient_id": f"{first} + g %% {users}", "notification_id": "md5('n' || g)::uuid",
        "title": "'Order shipped'", "body": "'Order ' || g || ' ships with UPS.'", "action_url": "'/o/' || g",
        "data": "'{}'::jsonb", "read_at": "CASE WHEN g %% 10 = 0 THEN NULL ELSE now() END",
        "created_at": "now() - g * interval '1 second'",
    })
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        for start in range(0, rows, chunk):
            end = min(rows, start + chunk) - 1
            cursor.execute(f"INSERT INTO {Notification._meta.db_table} ({n_cols}) SELECT {n_vals} "
                           f"FROM generate_series({start}, {end}) AS g", n_params)
            cursor.execute(f"INSERT INTO {InboxItem._meta.db_table} ({i_cols}) SELECT {i_vals} "
                           f"FROM generate_series({start}, {end}) AS g", i_params)
            print(f"inbox seed: {end + 1:,} rows", flush=True)
        cursor.execute(f"ANALYZE {Notification._meta.db_table}")
        cursor.execute(f"ANALYZE {InboxItem._meta.db_table}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--tokens-file", help="write recipient tokens of the first --token-users users here")
    parser.add_argument("--token-users", type=int, default=2_000)
    args = parser.parse_args()
    started = time.monotonic()
    key = seed.producer_key()
    seed.bench_type()
    Recipient.objects.bulk_create([Recipient(user_id=f"{PREFIX}{i}") for i in range(args.users)],
                                  ignore_conflicts=True, batch_size=10_000)
    if InboxItem.objects.count() < args.rows:
        with connection.cursor() as cursor:  # a partial seed from an interrupted run: start again
            cursor.execute(f"TRUNCATE {InboxItem._meta.db_table}, {Notification._meta.db_table} CASCADE")
        seed_rows(args.rows, args.users)
    if args.tokens_file:  # how an app reads its inbox: with its own user's token, not a producer key
        user_ids = [f"{PREFIX}{i}" for i in range(min(args.users, args.token_users))]
        ids = dict(Recipient.objects.filter(user_id__in=user_ids).values_list("user_id", "id"))
        tokens = {user_id: recipient_token_issue(user_id, ids[user_id]) for user_id in user_ids}
        Path(args.tokens_file).write_text(json.dumps(tokens))
    print(json.dumps({"producer_key": key, "seconds": round(time.monotonic() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
