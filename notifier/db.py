"""Set-based writes the ORM makes slow on the hot path."""
from __future__ import annotations

from django.db import connections, router


def rows_update(objects: list, field_names: list[str]) -> None:
    """Write `field_names` of model instances (all of one model) back to their rows.

    One `UPDATE … WHERE id = %s` per row, sent with executemany: psycopg 3 pipelines it, so a batch costs
    about one round trip. Django's bulk_update builds one `CASE WHEN id = … THEN …` per row and field
    instead; py-spy showed it as a quarter of the deliver workers' time (BENCHMARKS.md).
    """
    if not objects:
        return
    model = type(objects[0])
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    pk = model._meta.pk
    rows = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields]
        + [pk.get_db_prep_value(obj.pk, connection)]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
