"""Producer keys get finer scopes. A key with "send" reached users, devices, preferences, every inbox and
recipient tokens; it keeps all of that as the scopes that now name it, so no existing key loses anything.
"admin" keeps managing types and templates. New keys get only what they are given."""
import notifier.models.producers
from django.db import migrations, models

# What "send" reached before this migration, in the order of notifier.models.producers.SCOPES; written out
# here because a migration must not change when that module does.
SEND_REACHED = ["send", "users:read", "users:write", "inbox:read", "tokens"]
ORDER = [*SEND_REACHED, "admin"]


def scopes_split(apps, schema_editor):
    Producer = apps.get_model("notifier", "Producer")
    for producer in Producer.objects.all():
        if "send" in producer.scopes:
            scopes = set(producer.scopes) | set(SEND_REACHED)
            producer.scopes = [scope for scope in ORDER if scope in scopes]
            producer.save(update_fields=["scopes"])


def scopes_join(apps, schema_editor):
    # Back to the two scopes of before: "send" already covered the others.
    Producer = apps.get_model("notifier", "Producer")
    for producer in Producer.objects.all():
        producer.scopes = [scope for scope in producer.scopes if scope in ("send", "admin")]
        producer.save(update_fields=["scopes"])


class Migration(migrations.Migration):

    dependencies = [
        ('notifier', '0005_delivery_template_protect'),
    ]

    operations = [
        migrations.AlterField(
            model_name='producer',
            name='scopes',
            field=models.JSONField(default=list, help_text='What the key may do.', validators=[notifier.models.producers.scopes_validate]),
        ),
        migrations.RunPython(scopes_split, scopes_join),
    ]
