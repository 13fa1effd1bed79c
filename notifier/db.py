"""Set-based writes the ORM makes slow on the hot path."""
from __future__ import annotations

import re

from django.db import DataError, IntegrityError, connections, router, transaction

# Rows per UPDATE statement: keeps a statement's parameters far below PostgreSQL's limit of 65,535.
ROWS_PER_STATEMENT = 1000

# What the database raises for a row it cannot store (a value too long for its column, a character it
# cannot hold, a constraint): the row's fault, not the database's. Anything else (a lost connection) is.
ROW_REFUSED_ERRORS = (DataError, IntegrityError)


def rows_update(objects: list, field_names: list[str], where: dict | None = None) -> set:
    """Write `field_names` of model instances (all of one model) back to their rows, and return the
    primary keys of the rows written.

    `where` names columns every row must also still hold in the database (`{"claim_token": token}`): a
    row that no longer does is left as it is, and its key is missing from the result.

    One `UPDATE … FROM (VALUES …) RETURNING` per ROWS_PER_STATEMENT rows, so a batch costs about one round
    trip. Django's bulk_update builds one `CASE WHEN id = … THEN …` per row and field instead; py-spy showed
    it as a quarter of the deliver workers' time (BENCHMARKS.md).
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

    def value_of(field, column: int) -> str:
        # VALUES columns are column1, column2, … in PostgreSQL and SQLite alike.
        if connection.vendor != "postgresql":
            return f"v.column{column}"
        # PostgreSQL types a VALUES column by its values, and strings and NULLs arrive untyped: cast to
        # the column's type, but without a length (varchar(n)), which would cut a long value silently
        # where the column itself refuses it.
        return f"CAST(v.column{column} AS {re.sub(r'[(].*[)]', '', field.db_type(connection))})"

    assignments = ", ".join(f"{quote(field.column)} = {value_of(field, n)}" for n, field in enumerate(fields, 2))
    conditions = [f"{table}.{quote(pk.column)} = {value_of(pk, 1)}"]
    conditions += [f"{table}.{quote(field.column)} = %s" for field in where_fields]
    where_params = [field.get_db_prep_value(where[field.name], connection) for field in where_fields]
    row_sql = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    written = set()
    with connection.cursor() as cursor:
        for start in range(0, len(objects), ROWS_PER_STATEMENT):
            chunk = objects[start:start + ROWS_PER_STATEMENT]
            params = []
            for obj in chunk:
                params.append(pk.get_db_prep_value(obj.pk, connection))
                params.extend(field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields)
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE {' AND '.join(conditions)} RETURNING {table}.{quote(pk.column)}",
                params + where_params,
            )
            written.update(pk.to_python(row[0]) for row in cursor.fetchall())
    return written


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


def rows_insert(model, objects: list) -> None:
    """INSERT new rows of `model` as fast as the database takes them: PostgreSQL's COPY (about ten times
    bulk_create's rows per second here: docs/architecture.md, "Throughput rules"), bulk_create elsewhere.
    The objects' primary keys must be set already (UUIDs) or not be needed afterwards (an AutoField's id
    is not read back). No ON CONFLICT: a duplicate raises IntegrityError, and the caller's transaction
    (a campaign chunk's) is rolled back whole."""
    if not objects:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not (f.primary_key and f.get_internal_type().endswith("AutoField"))]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj in objects:
                copy.write_row([f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields])
