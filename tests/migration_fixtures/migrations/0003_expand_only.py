"""The same intentions, expand-only: what the old release reads stays, what it does not write has
a database default or may be NULL, the index is built CONCURRENTLY (so outside a transaction)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("migration_fixtures", "0002_unsafe")]

    operations = [
        migrations.AddField("sale", "source", models.CharField(max_length=16, db_default="web")),
        migrations.AddField("sale", "refunded_at", models.DateTimeField(null=True)),
        AddIndexConcurrently("sale", models.Index(fields=["source"], name="sale_source_idx")),
    ]
