from django.db import migrations, models


class Migration(migrations.Migration):
    """Each copy of a backup has a state: several targets per backup, each copy verified (or failed) on its own."""

    dependencies = [("dbs_admin", "0004_drill_times_and_smoke_sample")]

    operations = [
        migrations.AddField(
            model_name="backupcopy",
            name="state",
            field=models.CharField(
                choices=[("stored", "Stored and verified"), ("failed", "Failed")], default="stored", max_length=10
            ),
        ),
        migrations.AddField(
            model_name="backupcopy",
            name="detail",
            field=models.CharField(blank=True, help_text="Why the copy failed, or how it was verified.",
                                   max_length=500),
        ),
    ]
