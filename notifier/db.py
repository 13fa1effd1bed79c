"""Set-based writes the ORM makes slow on the hot path."""
from __future__ import annotations

import functools
import re
from operator import attrgetter

from django.db import DataError, IntegrityError, connections, models, router, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from notifier.models.fields import json_text

# Rows per UPDATE statement: keeps a statement's parameters far below PostgreSQL's limit of 65,535.
ROWS_PER_STATEMENT = 1000

# What the database raises for a row it cannot store (a value too long for its column, a character it
# cannot hold, a constraint): the row's fault, not the database's. Anything else (a lost connection) is.
ROW_REFUSED_ERRORS = (DataError, IntegrityError)


def row_new(model, **values):
    """A new, unsaved instance of `model`, as `model(**values)` makes it: the values by attribute name
    (`status`, `notification_id`) or a related object by its field name (`notification`), every other
    field at its default. About a tenth of the cost: Django's keyword __init__ looks up and sets every
    field through its descriptor (18 µs a Delivery here), a fifth of a campaign chunk's time for the
    thousands of rows a chunk builds. Models with init signal receivers are built by __init__."""
    fixed, made, relations = _new_row_plan(model)
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model(**values)
    obj = model.__new__(model)
    obj._state = ModelState()
    attributes = obj.__dict__
    attributes.update(fixed)
    for attname, default in made:
        attributes[attname] = default()
    for name, value in values.items():
        field = relations.get(name)
        if field is None:
            attributes[name] = value
        else:
            attributes[field.attname] = None if value is None else getattr(value, field.target_field.attname)
            if value is not None:
                obj._state.fields_cache[name] = value
    return obj


@functools.cache
def _new_row_plan(model) -> tuple[dict, list, dict]:
    """(the defaults that are values, (attname, callable) of those made per row, the relations by name)."""
    fixed, made = {}, []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            made.append((field.attname, field.default))
        else:
            fixed[field.attname] = field.get_default()
    relations = {field.name: field for field in model._meta.concrete_fields if field.is_relation}
    return fixed, made, relations


def rows_update(objects: list, field_names: list[str], where: dict | None = None) -> set:
    """Write `field_names` of model instances (all of one model) back to their rows, and return the
    primary keys of the rows written.

    `where` names columns every row must also still hold in the database (`{"claim_token": token}`): a
    row that no longer does is left as it is, and its key is missing from the result.

    PostgreSQL: one `UPDATE … FROM unnest(<one array per column>) … RETURNING`, a parameter per column
    whatever the number of rows. Django's bulk_update builds one `CASE WHEN id = … THEN …` per row and
    field instead (py-spy showed it as a quarter of the deliver workers' time, BENCHMARKS.md), and a
    `VALUES` list with a placeholder per value costs psycopg 30 ms to parse per 1,000 rows of ten fields.
    Elsewhere (SQLite): `UPDATE … FROM (VALUES …)`, ROWS_PER_STATEMENT rows at a time.
    """
    if not objects:
        return set()
    model = type(objects[0])
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), model._meta.pk
    fields = [model._meta.get_field(name) for name in field_names]
    where = where or {}
    where_fields = [model._meta.get_field(name) for name in where]
    conditions = [f"{table}.{quote(field.column)} = %s" for field in where_fields]
    where_params = [field.get_db_prep_value(where[field.name], connection) for field in where_fields]

    def column_values(field, chunk) -> list:
        if field is pk:
            return [pk.get_db_prep_value(obj.pk, connection) for obj in chunk]
        return [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in chunk]

    written = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A column with one value for every row (a batch's status, its provider) is one parameter, not
            # an array: fewer values for the driver to dump and the server to unnest.
            values = {field: column_values(field, objects) for field in fields}
            same = {field for field, column in values.items() if _all_equal(column)}
            columns = [pk, *(field for field in fields if field not in same)]
            arrays = ", ".join(f"%s::{column_cast_type(field, connection)}[]" for field in columns)
            names = ", ".join(f"c{n}" for n in range(len(columns)))
            assignments = ", ".join(
                [f"{quote(field.column)} = v.c{n}" for n, field in enumerate(columns[1:], 1)]
                + [f"{quote(field.column)} = %s::{column_cast_type(field, connection)}" for field in fields
                   if field in same])
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({names}) "
                f"WHERE {' AND '.join([f'{table}.{quote(pk.column)} = v.c0', *conditions])} "
                f"RETURNING {table}.{quote(pk.column)}",
                [values[field][0] for field in fields if field in same]
                + [column_values(pk, objects)] + [values[field] for field in columns[1:]] + where_params,
            )
            return {pk.to_python(row[0]) for row in cursor.fetchall()}
        # VALUES columns are column1, column2, … in SQLite.
        assignments = ", ".join(f"{quote(field.column)} = v.column{n}" for n, field in enumerate(fields, 2))
        conditions = [f"{table}.{quote(pk.column)} = v.column1", *conditions]
        row_sql = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
        for start in range(0, len(objects), ROWS_PER_STATEMENT):
            chunk = objects[start:start + ROWS_PER_STATEMENT]
            by_column = [column_values(field, chunk) for field in [pk, *fields]]
            params = [value for row in zip(*by_column) for value in row]
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE {' AND '.join(conditions)} RETURNING {table}.{quote(pk.column)}",
                params + where_params,
            )
            written.update(pk.to_python(row[0]) for row in cursor.fetchall())
    return written


def _all_equal(values: list) -> bool:
    first = values[0]
    return all(value is first or (type(value) is type(first) and value == first) for value in values)


def column_cast_type(field, connection) -> str:
    """The column's type for a cast, without a length (varchar(n) → varchar): a cast to varchar(n) would
    cut a long value silently, where the column itself refuses it."""
    return re.sub(r"[(].*[)]", "", field.db_type(connection))


def rows_write_isolated(rows: list, write) -> dict[int, Exception]:
    """Call `write(rows)`; if the database refuses it because of a row (ROW_REFUSED_ERRORS), call
    `write([row])` for each row instead, each in its own savepoint, so that a row that cannot be stored
    fails alone and the others are written. Returns {index in rows: the database's error} for the rows
    it refused. The happy path stays one set-based write."""
    try:
        with transaction.atomic():
            write(rows)
    except ROW_REFUSED_ERRORS:
        return _rows_write_one_by_one(rows, write)
    return {}


def _rows_write_one_by_one(rows: list, write) -> dict[int, Exception]:
    refused = {}
    for index, row in enumerate(rows):
        try:
            with transaction.atomic():
                write([row])
        except ROW_REFUSED_ERRORS as error:
            refused[index] = error
    return refused


def rows_insert(model, objects: list, *, with_ids: bool = False, ignore_conflicts: bool = False) -> None:
    """INSERT new rows of `model` as fast as the database takes them: PostgreSQL's COPY (about ten times
    bulk_create's rows per second here: docs/architecture.md, "Throughput rules"), bulk_create elsewhere.
    The objects' primary keys must be set already (UUIDs, or ids drawn by rows_ids_draw), or be needed
    afterwards only with `with_ids`: then the AutoField ids still missing are drawn first (rows_ids_draw).

    Without `ignore_conflicts`, a duplicate raises IntegrityError, and the caller's transaction (a
    campaign chunk's) is rolled back whole. With it, a row that conflicts with one already stored is
    left out, as bulk_create(ignore_conflicts=True) leaves it: on PostgreSQL one `INSERT … SELECT FROM
    unnest(<one array per column>) ON CONFLICT DO NOTHING` (COPY knows no ON CONFLICT), a parameter per
    column where bulk_create sends one per value and builds each value through the field."""
    if not objects:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        # sets AutoField ids where the database returns them (SQLite does)
        model.objects.bulk_create(objects, ignore_conflicts=ignore_conflicts)
        return
    meta = model._meta
    auto_pk = meta.pk.get_internal_type().endswith("AutoField")
    quote = connection.ops.quote_name
    if auto_pk and with_ids:
        rows_ids_draw(model, [obj for obj in objects if obj.pk is None])
    with connection.cursor() as cursor:
        fields = [f for f in meta.concrete_fields if not (f.primary_key and auto_pk and not with_ids)]
        columns = ", ".join(quote(f.column) for f in fields)
        values = [column_value_getter(f, connection) for f in fields]
        if ignore_conflicts:
            arrays = ", ".join(f"%s::{column_cast_type(f, connection)}[]" for f in fields)
            cursor.execute(f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT * FROM unnest({arrays}) "
                           f"ON CONFLICT DO NOTHING", [[value(obj) for obj in objects] for value in values])
            return
        # The driver's own cursor: Django's wrap turns its errors into Django's (IntegrityError, DataError).
        with connection.wrap_database_errors, cursor.cursor.copy(
                f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj in objects:
                copy.write_row([value(obj) for value in values])


def rows_ids_draw(model, objects: list) -> None:
    """Set the AutoField ids of new, unsaved rows before they are stored, drawn from the table's sequence
    in one query (PostgreSQL), for work that needs them first (a campaign chunk's in-app deliveries are
    sent, by id, before they are stored). Elsewhere (SQLite) the next ids after the largest, which is
    safe there because SQLite has one writer at a time."""
    if not objects:
        return
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [meta.db_table, meta.pk.column, len(objects)])
            ids = [id_ for (id_,) in cursor.fetchall()]
        else:
            cursor.execute(f"SELECT COALESCE(MAX({connection.ops.quote_name(meta.pk.column)}), 0) "
                           f"FROM {connection.ops.quote_name(meta.db_table)}")
            largest = cursor.fetchone()[0]
            ids = range(largest + 1, largest + 1 + len(objects))
    for obj, id_ in zip(objects, ids):
        obj.pk = id_


# Fields whose Python value PostgreSQL's driver takes as it is (str, int, bool, UUID, aware datetime): COPY
# reads them straight off the object. Django's pre_save + get_db_prep_save per value was a third of a
# campaign chunk's time, for conversions that change nothing for these types.
_AS_IT_IS = (models.CharField, models.TextField, models.IntegerField, models.BooleanField, models.UUIDField,
             models.DateTimeField)


def column_value_getter(field, connection):
    """A function of a model instance that gives `field`'s value as COPY (or an unnest array) writes it."""
    target = field.target_field if field.is_relation else field
    stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    if isinstance(target, _AS_IT_IS) and not stamped:
        return attrgetter(field.attname)
    if isinstance(field, models.JSONField) and field.encoder is None:
        # The JSON text itself, which the column parses: no Jsonb wrapper per value for the driver to dump.
        get = attrgetter(field.attname)
        return lambda obj: None if (value := get(obj)) is None else json_text(value)
    return lambda obj: field.get_db_prep_save(field.pre_save(obj, add=True), connection)
