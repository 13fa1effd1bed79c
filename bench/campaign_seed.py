"""The campaign scenario's users, written with COPY (psycopg 3 `cursor.copy`) rather than the ORM: a pool of
users camp-u0 … camp-u<n-1> with an email address and marketing opt-in, a topic per campaign size
(bench-campaign-<size>: the first <size> users of the pool) that the campaign's segment names, and one
Android device each for the first users of the push run. Kept between runs: each part is checked by
count and only what is missing is written, so a rerun is not dominated by seeding.

A topic segment, not {"all": true}: the bench database also holds the other scenarios' users (bench-u…,
push-u…), who must not be counted into a campaign.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

if __name__ == "__main__":  # run as a command (main() below): Django before the models
    from bench.run import django_setup

    django_setup()

from django.db import connection, models  # noqa: E402

from bench.tokens import campaign_push_token  # noqa: E402
from notifier.models import Device, NotificationType, Recipient, RecipientTopic, Template  # noqa: E402

PREFIX = "camp-u"
# The warm-up campaign's users, apart from the measured ones: marketing is limited to one message a day per
# user (NOTIFIER_RATE_LIMITS), so a user warmed up on would be suppressed in the measured campaign.
WARM_PREFIX, WARM_SIZE, WARM_TOPIC = "camp-w", 100, "bench-campaign-warm"
TYPE_KEY = "bench_campaign"
# Campaign messages carry no bench reference (only the high-priority probes do): the fakes' ledgers find
# references by scanning each request, and 1,000 personalizations per request are counted, not scanned.
TEMPLATES = {
    # Marketing email must show its unsubscribe link in both parts (pipeline/render.py refuses it otherwise).
    "email": {"subject": "{{ offer }} off this week",
              "body": "Hello, {{ offer }} off everything until Sunday.\n\nUnsubscribe: {{ unsubscribe_url }}",
              "html_body": "<p>Hello, <b>{{ offer }}</b> off everything until Sunday.</p>"
                           "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"},
    "in_app": {"title": "{{ offer }} off", "body": "Everything, until Sunday.", "action_url": "/sale"},
    "push": {"title": "{{ offer }} off", "body": "Everything, until Sunday."},
}
COPY_BLOCK = 50_000  # rows per write: text built in Python, one buffer at a time


def topic(size: int) -> str:
    return f"bench-campaign-{size}"


def email(index: int, prefix: str = PREFIX) -> str:
    return f"{prefix}{index}@example.com"


TOKEN_PREFIXES = {PREFIX: "bench-cpush-", WARM_PREFIX: "bench-cwarm-"}  # every device token of a pool starts so


def push_token(index: int, prefix: str = PREFIX) -> str:
    return campaign_push_token(index) if prefix == PREFIX else f"{TOKEN_PREFIXES[prefix]}{index}"


def campaign_type() -> NotificationType:
    """A marketing type with email, in-app and push templates (the users opted in to marketing)."""
    notification_type, _ = NotificationType.objects.update_or_create(
        key=TYPE_KEY,
        defaults={"name": "Bench campaign", "category": "marketing", "default_priority": "low",
                  "default_channels": ["email", "in_app"], "variables": {"offer": {"default": "20%"}}},
    )
    for channel, fields in TEMPLATES.items():
        Template.objects.update_or_create(type=notification_type, channel=channel, language="en", version=1,
                                          defaults={**fields, "active": True})
    return notification_type


def _text(value) -> str:
    """One value in COPY's text format (the bench's values hold no tab, newline or backslash)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def copy_columns(model, given: set[str]) -> tuple[list[str], dict[str, str]]:
    """The columns COPY writes for `model`: those in `given`, plus every other NOT NULL column without a
    database default, filled with the model's default (auto_now fields: now) as constant text. Nullable
    columns not given are left NULL; the id is numbered by the database."""
    now = datetime.now(timezone.utc)
    columns, constants = [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in given:
            continue
        if field.column in given:
            columns.append(field.column)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            columns.append(field.column)
            constants[field.column] = _text(now)
        elif field.has_default():
            columns.append(field.column)
            constants[field.column] = _text(field.get_default())
        elif not field.null:
            if isinstance(field, (models.CharField, models.TextField)):
                columns.append(field.column)
                constants[field.column] = ""
            else:
                raise RuntimeError(f"campaign seed: no value for {model.__name__}.{field.name}; add it to the seed")
    return columns, constants


def copy_rows(model, rows, given: list[str]) -> int:
    """COPY `rows` (tuples in the order of `given`) into `model`'s table; returns how many."""
    columns, constants = copy_columns(model, set(given))
    order = [(given.index(c), None) if c in given else (None, constants[c]) for c in columns]
    statement = f'COPY {model._meta.db_table} ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in columns)}) FROM STDIN'
    written = 0
    with connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            block = []
            for values in rows:
                block.append("\t".join(_text(values[i]) if i is not None else constant for i, constant in order))
                if len(block) >= COPY_BLOCK:
                    copy.write("\n".join(block) + "\n")
                    written += len(block)
                    block = []
            if block:
                copy.write("\n".join(block) + "\n")
                written += len(block)
    return written


def _index_sql(prefix: str = PREFIX) -> str:
    return f"substring(user_id from {len(prefix) + 1})::int"


def users(count: int, prefix: str = PREFIX) -> int:
    """Users camp-u0 … camp-u<count-1>, opted in to marketing, each with an email address: the missing ones
    are copied in. A pool with holes (an interrupted seed) is written again. Returns how many were written."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), coalesce(max({_index_sql(prefix)}), -1) FROM notifier_recipient "
                       f"WHERE user_id LIKE %s", [prefix + "%"])
        existing, highest = cursor.fetchone()
    if existing == highest + 1 and existing >= count:
        return 0
    if existing != highest + 1:  # holes (an interrupted seed): write the pool again
        pool = f"SELECT id FROM notifier_recipient WHERE user_id LIKE %s"
        with connection.cursor() as cursor:  # notifications of theirs are gone already (harness.data_reset)
            for table in (RecipientTopic._meta.db_table, Device._meta.db_table):
                cursor.execute(f"DELETE FROM {table} WHERE recipient_id IN ({pool})", [prefix + "%"])
            cursor.execute(f"DELETE FROM notifier_recipient WHERE user_id LIKE %s", [prefix + "%"])
        existing = 0
    given = ["user_id", "email", "marketing_opt_in"]
    written = copy_rows(Recipient, ((f"{prefix}{i}", email(i, prefix), True) for i in range(existing, count)), given)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notifier_recipient")
    return written


def topics(size: int, prefix: str = PREFIX, name: str = "") -> int:
    """The topic bench-campaign-<size> (or `name`): the pool's first `size` users. Returns how many rows were
    written."""
    name = name or topic(size)
    table = RecipientTopic._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE topic = %s", [name])
        if cursor.fetchone()[0] == size:
            return 0
        cursor.execute(f"DELETE FROM {table} WHERE topic = %s", [name])
        cursor.execute(f"SELECT id FROM notifier_recipient WHERE user_id LIKE %s AND {_index_sql(prefix)} < %s",
                       [prefix + "%", size])
        ids = [r[0] for r in cursor.fetchall()]
    if len(ids) != size:
        raise RuntimeError(f"campaign seed: {len(ids)} users for topic {name}, not {size}; seed users first")
    written = copy_rows(RecipientTopic, ((i, name) for i in ids), ["recipient_id", "topic"])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return written


def devices(count: int, prefix: str = PREFIX) -> int:
    """One Android device for each of the pool's first `count` users (push_token). Returns how many were
    written."""
    table = Device._meta.db_table
    tokens = TOKEN_PREFIXES[prefix] + "%"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE token LIKE %s", [tokens])
        if cursor.fetchone()[0] == count:
            return 0
        cursor.execute(f"DELETE FROM {table} WHERE token LIKE %s", [tokens])
        cursor.execute(f"SELECT id, {_index_sql(prefix)} FROM notifier_recipient WHERE user_id LIKE %s "
                       f"AND {_index_sql(prefix)} < %s", [prefix + "%", count])
        pairs = cursor.fetchall()
    written = copy_rows(Device, ((rid, "android", push_token(i, prefix), True) for rid, i in pairs),
                        ["recipient_id", "platform", "token", "active"])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return written


def setup(sizes: list[int], push: int) -> dict:
    """Everything the campaign scenario needs for these sizes; {"written": {...}, "seconds"}."""
    started = time.monotonic()
    campaign_type()
    written = {"users": users(max(sizes + [push]))}
    for size in sorted(set(sizes + ([push] if push else []))):
        written[f"topic {size}"] = topics(size)
    written["devices"] = devices(push) if push else 0
    written["warm-up users"] = users(WARM_SIZE, WARM_PREFIX) + topics(WARM_SIZE, WARM_PREFIX, WARM_TOPIC) \
        + devices(WARM_SIZE, WARM_PREFIX)
    return {"written": written, "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    """`python -m bench.campaign_seed [--sizes 100000,1000000] [--push 100000]`: seed ahead of a run (the
    bench database, migrated first), printing what was written and how long it took."""
    import argparse

    from bench import harness

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--push", type=int, default=100_000)
    args = parser.parse_args()
    harness.database_create(harness.DATABASE_URL)
    print(json.dumps(setup([int(s) for s in args.sizes.split(",") if s], args.push)), flush=True)


if __name__ == "__main__":
    main()
