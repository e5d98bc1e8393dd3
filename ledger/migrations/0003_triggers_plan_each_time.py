"""The triggers' queries (a SUM over an entry's lines, an EXISTS on the entry) are planned per
execution, from the tables' current size: a plan cached while the ledger was empty would keep
scanning whole tables as it grows, until the next ANALYZE (PostgreSQL only)."""

from django.db import migrations

FUNCTIONS = ("ledger_entry_seal()", "ledger_line_unsealed()")


def custom_plans(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for function in FUNCTIONS:
            schema_editor.execute(f"ALTER FUNCTION {function} SET plan_cache_mode = force_custom_plan")


def default_plans(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for function in FUNCTIONS:
            schema_editor.execute(f"ALTER FUNCTION {function} RESET plan_cache_mode")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_append_only_triggers")]
    operations = [migrations.RunPython(custom_plans, default_plans)]
