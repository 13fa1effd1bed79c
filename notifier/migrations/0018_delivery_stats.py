"""Delivery gets copies of its notification's due time, producer and type (what GET /api/v1/stats reads,
without a join), and the index of the stats window. Existing rows are filled from their notifications
before the columns become NOT NULL."""
import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def deliveries_copy_from_notifications(apps, schema_editor):
    Delivery = apps.get_model("notifier", "Delivery")
    Notification = apps.get_model("notifier", "Notification")
    own = Notification.objects.filter(id=OuterRef("notification_id"))
    Delivery.objects.filter(notification_due_at=None).update(
        notification_due_at=Subquery(own.values("due_at")[:1]),
        producer_id=Subquery(own.values("producer_id")[:1]),
        type_id=Subquery(own.values("type_id")[:1]),
    )


class Migration(migrations.Migration):

    dependencies = [
        ("notifier", "0017_pending_event_delivery"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="notification_due_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="delivery",
            name="producer",
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to="notifier.producer"),
        ),
        migrations.AddField(
            model_name="delivery",
            name="type",
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to="notifier.notificationtype"),
        ),
        migrations.RunPython(deliveries_copy_from_notifications, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="delivery",
            name="notification_due_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="producer",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to="notifier.producer"),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="type",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to="notifier.notificationtype"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["notification_due_at"], name="delivery_due_at"),
        ),
    ]
