"""One SLA policy per ticket kind: first response (with a resolution plan) within 48 h, a
warning to the assignee at 36 h, resolution within 168 h. Staff tune them in admin."""

from django.db import migrations

KINDS = ("not_received", "invalid", "wrong_item", "refund", "other")
DEFAULTS = {"first_response_hours": 48, "warn_after_hours": 36, "resolution_hours": 168}


def create(apps, schema_editor):
    SlaPolicy = apps.get_model("aftersales", "SlaPolicy")
    for kind in KINDS:
        SlaPolicy.objects.get_or_create(kind=kind, defaults=DEFAULTS)


def remove(apps, schema_editor):
    SlaPolicy = apps.get_model("aftersales", "SlaPolicy")
    # Only the rows still at their defaults: a policy staff changed is kept.
    SlaPolicy.objects.filter(kind__in=KINDS, **DEFAULTS).delete()


class Migration(migrations.Migration):
    dependencies = [("aftersales", "0001_initial")]

    operations = [migrations.RunPython(create, remove)]
