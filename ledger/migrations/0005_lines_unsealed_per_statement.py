"""Lines added to a written entry are refused once per statement, not once per line (PostgreSQL).

Migration 0002's ``ledger_line_unsealed`` ran a BEFORE INSERT trigger for each line: a call of a
PL/pgSQL function carrying ``SET plan_cache_mode`` (migration 0003: a GUC level pushed and popped
per call) that planned its EXISTS again for every line. A delivery posts four lines, a payment
two: that was about 0.2 ms of the backend's CPU per delivery entry (0.8 -> 0.6 ms for an entry of
four lines with its commit, measured in bench/README.md).

The same refusal now runs once per INSERT statement, AFTER it, over the statement's new rows (a
transition table): if any of them names an entry already written, the statement fails and
nothing it wrote stays, as before. The function keeps the custom plan per execution (the reason
of migration 0003: a plan cached while the ledger was empty would scan a grown table). The names
stay, so migrations 0002 and 0003 still undo what they did. SQLite (development) keeps its
per-row trigger.
"""

from importlib import import_module

from django.db import migrations

PER_STATEMENT = """
DROP TRIGGER ledger_line_unsealed ON ledger_line;
CREATE OR REPLACE FUNCTION ledger_line_unsealed() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE written uuid;
BEGIN
    SELECT n.entry_id INTO written FROM new_lines n JOIN ledger_entry e ON e.id = n.entry_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % is already written: lines cannot be added', written
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_line_unsealed AFTER INSERT ON ledger_line REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_line_unsealed();
"""


def per_statement(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PER_STATEMENT, params=None)  # the SQL has % of its own


def per_row(apps, schema_editor):
    """Back to the trigger per line: the function and trigger as migration 0002 wrote them, with
    migration 0003's setting."""
    if schema_editor.connection.vendor != "postgresql":
        return
    created = import_module("ledger.migrations.0002_append_only_triggers").POSTGRES
    start = created.index("CREATE FUNCTION ledger_line_unsealed()")
    tail = "EXECUTE FUNCTION ledger_line_unsealed();"
    end = created.index(tail, start) + len(tail)
    schema_editor.execute(
        "DROP TRIGGER ledger_line_unsealed ON ledger_line; DROP FUNCTION ledger_line_unsealed();"
        + created[start:end]
        + "ALTER FUNCTION ledger_line_unsealed() SET plan_cache_mode = force_custom_plan;",
        params=None,
    )


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_balances_kept_by_triggers")]
    operations = [migrations.RunPython(per_statement, per_row)]
