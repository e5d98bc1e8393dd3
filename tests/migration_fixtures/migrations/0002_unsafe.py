"""Each operation here breaks the release before it while both run, or locks a busy table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migration_fixtures", "0001_initial")]

    operations = [
        # The old code's INSERTs name no `channel`: refused by NOT NULL (the default is Python's).
        migrations.AddField("sale", "channel", models.CharField(max_length=16, default="web")),
        # The old code selects `buyer_email`.
        migrations.RemoveField("sale", "buyer_email"),
        # The old code selects `amount`.
        migrations.RenameField("sale", "amount", "total"),
        # Writes wait for the whole build (no CONCURRENTLY).
        migrations.AddIndex("sale", models.Index(fields=["total"], name="sale_total_idx")),
        # Every read and write waits for a scan of the table (validated under ACCESS EXCLUSIVE).
        migrations.AddConstraint(
            "sale", models.CheckConstraint(condition=models.Q(total__gte=0), name="sale_total_not_negative")
        ),
    ]
