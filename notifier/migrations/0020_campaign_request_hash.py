from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notifier", "0019_campaigns")]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="request_hash",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
