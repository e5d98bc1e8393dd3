"""Refund requests get a random public id for their page address (no sequential pk in URLs).

Three steps, as Django documents for a unique field on a table with rows: add the column
nullable, give every existing row its own UUID, then make it unique and required.
"""

import uuid

from django.db import migrations, models


def fill_public_ids(apps, schema_editor):
    RefundRequest = apps.get_model("aftersales", "RefundRequest")
    for pk in RefundRequest.objects.filter(public_id__isnull=True).values_list("pk", flat=True).iterator():
        RefundRequest.objects.filter(pk=pk).update(public_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("aftersales", "0007_ticketattachment_public_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="refundrequest",
            name="public_id",
            field=models.UUIDField(editable=False, null=True, verbose_name="public id"),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="refundrequest",
            name="public_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True, verbose_name="public id"),
        ),
    ]
