"""The single-column indexes Django makes for these foreign keys, dropped: each column leads a composite
index of its table already (notification_recipient, inbox_page, event_delivery, ...), which serves the
same lookups, the foreign key's among them; the second index only cost every insert and update of the
row (a notification wrote ten indexes, now eight). Only the indexes go: Django's own AlterField would
also drop and re-create each foreign key, and re-creating one validates every row of a large table under
lock."""
import django.db.models.deletion
from django.db import migrations, models

# (index, table, column)
DROPPED = [
    ("notifier_campaign_producer_id_82de1112", "notifier_campaign", "producer_id"),
    ("notifier_campaignchunk_campaign_id_a07320d5", "notifier_campaignchunk", "campaign_id"),
    ("notifier_campaignmember_campaign_id_a3933b76", "notifier_campaignmember", "campaign_id"),
    ("notifier_deliveryattempt_delivery_id_fcaa9a63", "notifier_deliveryattempt", "delivery_id"),
    ("notifier_deliveryevent_delivery_id_618dff5b", "notifier_deliveryevent", "delivery_id"),
    ("notifier_device_recipient_id_0f9e4841", "notifier_device", "recipient_id"),
    ("notifier_idempotencykey_producer_id_cf598c2a", "notifier_idempotencykey", "producer_id"),
    ("notifier_inboxitem_recipient_id_3d641c9e", "notifier_inboxitem", "recipient_id"),
    ("notifier_notification_producer_id_80c0567b", "notifier_notification", "producer_id"),
    ("notifier_notification_recipient_id_a4c54388", "notifier_notification", "recipient_id"),
    ("notifier_recipienttopic_recipient_id_2850fd42", "notifier_recipienttopic", "recipient_id"),
    ("notifier_template_type_id_2e706952", "notifier_template", "type_id"),
    ("notifier_unsubscription_recipient_id_6fcb3fb3", "notifier_unsubscription", "recipient_id"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("notifier", "0022_json_fields_orjson"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{index}"',
                                  reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")')
                for index, table, column in DROPPED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='campaign',
                    name='producer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='campaigns', to='notifier.producer'),
                ),
                migrations.AlterField(
                    model_name='campaignchunk',
                    name='campaign',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='notifier.campaign'),
                ),
                migrations.AlterField(
                    model_name='campaignmember',
                    name='campaign',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='members', to='notifier.campaign'),
                ),
                migrations.AlterField(
                    model_name='deliveryattempt',
                    name='delivery',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempt_history', to='notifier.delivery'),
                ),
                migrations.AlterField(
                    model_name='deliveryevent',
                    name='delivery',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='notifier.delivery'),
                ),
                migrations.AlterField(
                    model_name='device',
                    name='recipient',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='devices', to='notifier.recipient'),
                ),
                migrations.AlterField(
                    model_name='idempotencykey',
                    name='producer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='notifier.producer'),
                ),
                migrations.AlterField(
                    model_name='inboxitem',
                    name='recipient',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='inbox', to='notifier.recipient'),
                ),
                migrations.AlterField(
                    model_name='notification',
                    name='producer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='notifier.producer'),
                ),
                migrations.AlterField(
                    model_name='notification',
                    name='recipient',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='notifier.recipient'),
                ),
                migrations.AlterField(
                    model_name='recipienttopic',
                    name='recipient',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='topics', to='notifier.recipient'),
                ),
                migrations.AlterField(
                    model_name='template',
                    name='type',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='templates', to='notifier.notificationtype'),
                ),
                migrations.AlterField(
                    model_name='unsubscription',
                    name='recipient',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='unsubscriptions', to='notifier.recipient'),
                ),
            ],
        ),
    ]
