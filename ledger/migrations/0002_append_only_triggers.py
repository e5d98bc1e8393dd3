"""The database itself keeps the journal honest, whatever code talks to it:

- an entry can only be written once its lines are there and sum to zero (two lines at least);
- lines cannot be added to an entry already written;
- entries and lines are never updated or deleted (PostgreSQL; on SQLite, the development
  default, only updates are refused, because test set-ups empty tables with DELETE).
"""

from django.db import migrations

POSTGRES = """
CREATE FUNCTION ledger_entry_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total numeric; n integer;
BEGIN
    SELECT COALESCE(SUM(amount), 0), COUNT(*) INTO total, n FROM ledger_line WHERE entry_id = NEW.id;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger entry % has % line(s): at least two are needed', NEW.id, n
            USING ERRCODE = 'check_violation';
    END IF;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger entry % does not balance: its lines sum to %', NEW.id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_entry_seal BEFORE INSERT ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_seal();

CREATE FUNCTION ledger_line_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entry WHERE id = NEW.entry_id) THEN
        RAISE EXCEPTION 'ledger entry % is already written: lines cannot be added', NEW.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_line_unsealed BEFORE INSERT ON ledger_line
    FOR EACH ROW EXECUTE FUNCTION ledger_line_unsealed();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (post a reversing entry)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_line_append_only BEFORE UPDATE OR DELETE ON ledger_line
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
"""

POSTGRES_DROP = """
DROP TRIGGER ledger_line_append_only ON ledger_line;
DROP TRIGGER ledger_entry_append_only ON ledger_entry;
DROP FUNCTION ledger_append_only();
DROP TRIGGER ledger_line_unsealed ON ledger_line;
DROP FUNCTION ledger_line_unsealed();
DROP TRIGGER ledger_entry_seal ON ledger_entry;
DROP FUNCTION ledger_entry_seal();
"""

# Amounts compared in whole fen: SQLite's decimals are not exact.
SQLITE = [
    """
    CREATE TRIGGER ledger_entry_seal BEFORE INSERT ON ledger_entry
    WHEN (SELECT COUNT(*) FROM ledger_line WHERE entry_id = NEW.id) < 2
      OR (SELECT COALESCE(SUM(CAST(ROUND(amount * 100) AS INTEGER)), 0) FROM ledger_line WHERE entry_id = NEW.id) <> 0
    BEGIN SELECT RAISE(ABORT, 'ledger entry does not balance or has fewer than two lines'); END
    """,
    """
    CREATE TRIGGER ledger_line_unsealed BEFORE INSERT ON ledger_line
    WHEN EXISTS (SELECT 1 FROM ledger_entry WHERE id = NEW.entry_id)
    BEGIN SELECT RAISE(ABORT, 'ledger entry is already written: lines cannot be added'); END
    """,
    """
    CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE ON ledger_entry
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a reversing entry'); END
    """,
    """
    CREATE TRIGGER ledger_line_append_only BEFORE UPDATE ON ledger_line
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a reversing entry'); END
    """,
]
SQLITE_DROP = [
    f"DROP TRIGGER {name}"
    for name in ("ledger_entry_seal", "ledger_line_unsealed", "ledger_entry_append_only", "ledger_line_append_only")
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # the SQL has % of its own
    elif vendor == "sqlite":
        for sql in SQLITE:
            schema_editor.execute(sql)
    else:
        raise RuntimeError(f"no ledger triggers for {vendor}: the journal would not be protected")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in [POSTGRES_DROP] if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
