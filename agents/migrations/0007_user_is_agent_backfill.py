from django.db import migrations


def backfill(apps, schema_editor):
    """``User.is_agent`` for the agent profiles that exist (agents.receivers keeps it after)."""
    User = apps.get_model("accounts", "User")
    Agent = apps.get_model("agents", "Agent")
    User.objects.filter(pk__in=Agent.objects.values("user_id")).update(is_agent=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_user_is_agent"),
        ("agents", "0006_operator_identity"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
