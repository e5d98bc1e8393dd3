"""Balance rows are the database's, not the application's (issue 10).

- An account that may not be overdrawn gets its balance row (0) from the database when it is
  created; a balance row can only be inserted at 0, for such an account, before it has lines,
  with the account's overdraft rule and side.
- Every journal line moves its account's balance row (if it has one) by the line's natural
  amount, in the statement that writes the line; the row's CHECK then refuses an overdraft.
- Nothing else moves a balance row: PostgreSQL refuses an UPDATE or DELETE of ledger_balance
  that does not come from one of these triggers (``pg_trigger_depth()``), SQLite refuses an
  UPDATE that leaves the row different from the sum of its account's lines.
- An account's kind (the sign of its balance) and overdraft rule never change; an account
  with lines cannot be deleted.
- TRUNCATE of the four ledger tables is refused (PostgreSQL; SQLite has no TRUNCATE).

What this cannot stop: a role that may turn triggers off. A superuser can
(``session_replication_role``), the tables' owner can (``ALTER TABLE ... DISABLE TRIGGER``),
and a role that may create temporary tables can build a trigger context of its own. The
production application therefore connects as a role that is none of these (see the README's
"Deploying" and deploy/postgres-init.sh); ``manage.py ledger_check`` compares every balance row
with its lines whatever happened. The test suite empties tables with TRUNCATE under
``session_replication_role = replica`` (tests/conftest.py), which is superuser-only.

On SQLite (the embedded development database) DELETE is not refused: test set-ups empty
tables with DELETE, as migration 0002 explains.
"""

from django.db import migrations, models

DEBIT_NORMAL = ("asset", "expense")

POSTGRES = """
CREATE FUNCTION ledger_account_opens_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_balance (account_id, balance, allow_negative, debit_normal)
        VALUES (NEW.id, 0, false, NEW.kind IN ('asset', 'expense'));
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_account_opens_balance AFTER INSERT ON ledger_account
    FOR EACH ROW WHEN (NOT NEW.allow_negative) EXECUTE FUNCTION ledger_account_opens_balance();

CREATE FUNCTION ledger_account_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM ledger_line WHERE account_id = OLD.id) THEN
            RAISE EXCEPTION 'ledger account % has journal lines: it cannot be deleted', OLD.code
                USING ERRCODE = 'restrict_violation';
        END IF;
        DELETE FROM ledger_balance WHERE account_id = OLD.id;
        RETURN OLD;
    END IF;
    IF NEW.id <> OLD.id OR NEW.kind <> OLD.kind OR NEW.allow_negative <> OLD.allow_negative THEN
        RAISE EXCEPTION 'ledger account %: its kind and overdraft rule are fixed when it is created', OLD.code
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_account_fixed BEFORE UPDATE OR DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_fixed();

CREATE FUNCTION ledger_balance_opened() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance <> 0 OR NEW.allow_negative OR NOT EXISTS (
        SELECT 1 FROM ledger_account
         WHERE id = NEW.account_id AND NOT allow_negative
           AND NEW.debit_normal = (kind IN ('asset', 'expense'))
    ) OR EXISTS (SELECT 1 FROM ledger_line WHERE account_id = NEW.account_id) THEN
        RAISE EXCEPTION 'a ledger balance row starts at 0, with its account, for an account that may not be overdrawn'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_balance_opened BEFORE INSERT ON ledger_balance
    FOR EACH ROW EXECUTE FUNCTION ledger_balance_opened();

-- The hot path: one primary-key update per line (none for platform accounts, which have no row).
CREATE FUNCTION ledger_line_moves_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_balance
       SET balance = balance + CASE WHEN debit_normal THEN NEW.amount ELSE -NEW.amount END
     WHERE account_id = NEW.account_id;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_line_moves_balance AFTER INSERT ON ledger_line
    FOR EACH ROW EXECUTE FUNCTION ledger_line_moves_balance();

CREATE FUNCTION ledger_balance_refused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger balance rows are moved by journal lines only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
-- The WHEN clause is evaluated outside the trigger function: pg_trigger_depth() is 0 for a
-- statement sent by a client and 1 inside the line (or account) trigger above.
CREATE TRIGGER ledger_balance_moved_by_lines BEFORE UPDATE ON ledger_balance
    FOR EACH ROW WHEN (
        pg_trigger_depth() < 1 OR NEW.account_id <> OLD.account_id
        OR NEW.allow_negative <> OLD.allow_negative OR NEW.debit_normal <> OLD.debit_normal
    ) EXECUTE FUNCTION ledger_balance_refused();
CREATE TRIGGER ledger_balance_not_deleted BEFORE DELETE ON ledger_balance
    FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION ledger_balance_refused();

CREATE FUNCTION ledger_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: TRUNCATE of % refused', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
CREATE TRIGGER ledger_line_no_truncate BEFORE TRUNCATE ON ledger_line
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
CREATE TRIGGER ledger_balance_no_truncate BEFORE TRUNCATE ON ledger_balance
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
CREATE TRIGGER ledger_account_no_truncate BEFORE TRUNCATE ON ledger_account
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
"""

POSTGRES_DROP = """
DROP TRIGGER ledger_account_no_truncate ON ledger_account;
DROP TRIGGER ledger_balance_no_truncate ON ledger_balance;
DROP TRIGGER ledger_line_no_truncate ON ledger_line;
DROP TRIGGER ledger_entry_no_truncate ON ledger_entry;
DROP FUNCTION ledger_no_truncate();
DROP TRIGGER ledger_balance_not_deleted ON ledger_balance;
DROP TRIGGER ledger_balance_moved_by_lines ON ledger_balance;
DROP FUNCTION ledger_balance_refused();
DROP TRIGGER ledger_line_moves_balance ON ledger_line;
DROP FUNCTION ledger_line_moves_balance();
DROP TRIGGER ledger_balance_opened ON ledger_balance;
DROP FUNCTION ledger_balance_opened();
DROP TRIGGER ledger_account_fixed ON ledger_account;
DROP FUNCTION ledger_account_fixed();
DROP TRIGGER ledger_account_opens_balance ON ledger_account;
DROP FUNCTION ledger_account_opens_balance();
"""

# SQLite has no trigger depth: it refuses any balance update that leaves the row different
# from its account's lines (summed in whole fen: SQLite's decimals are not exact). That sum
# reads the account's lines on every posting to it, which is fine for development.
SQLITE = [
    """
    CREATE TRIGGER ledger_account_opens_balance AFTER INSERT ON ledger_account
    WHEN NOT NEW.allow_negative
    BEGIN
        INSERT INTO ledger_balance (account_id, balance, allow_negative, debit_normal)
        VALUES (NEW.id, 0, 0, NEW.kind IN ('asset', 'expense'));
    END
    """,
    """
    CREATE TRIGGER ledger_account_fixed BEFORE UPDATE ON ledger_account
    WHEN NEW.id IS NOT OLD.id OR NEW.kind IS NOT OLD.kind OR NEW.allow_negative IS NOT OLD.allow_negative
    BEGIN SELECT RAISE(ABORT, 'a ledger account''s kind and overdraft rule are fixed when it is created'); END
    """,
    """
    CREATE TRIGGER ledger_balance_opened BEFORE INSERT ON ledger_balance
    WHEN NEW.balance <> 0 OR NEW.allow_negative OR NOT EXISTS (
        SELECT 1 FROM ledger_account
         WHERE id = NEW.account_id AND NOT allow_negative AND NEW.debit_normal = (kind IN ('asset', 'expense'))
    ) OR EXISTS (SELECT 1 FROM ledger_line WHERE account_id = NEW.account_id)
    BEGIN
        SELECT RAISE(ABORT, 'a ledger balance row starts at 0, with its account, for an account that may not be overdrawn');
    END
    """,
    """
    CREATE TRIGGER ledger_line_moves_balance AFTER INSERT ON ledger_line
    BEGIN
        UPDATE ledger_balance
           SET balance = ROUND(balance + CASE WHEN debit_normal THEN NEW.amount ELSE -NEW.amount END, 2)
         WHERE account_id = NEW.account_id;
    END
    """,
    """
    CREATE TRIGGER ledger_balance_moved_by_lines BEFORE UPDATE ON ledger_balance
    WHEN NEW.account_id IS NOT OLD.account_id OR NEW.allow_negative IS NOT OLD.allow_negative
      OR NEW.debit_normal IS NOT OLD.debit_normal
      OR CAST(ROUND(NEW.balance * 100) AS INTEGER) <> (CASE WHEN OLD.debit_normal THEN 1 ELSE -1 END) * (
          SELECT COALESCE(SUM(CAST(ROUND(amount * 100) AS INTEGER)), 0) FROM ledger_line WHERE account_id = OLD.account_id
      )
    BEGIN SELECT RAISE(ABORT, 'ledger balance rows are moved by journal lines only'); END
    """,
]
SQLITE_DROP = [
    f"DROP TRIGGER {name}"
    for name in (
        "ledger_balance_moved_by_lines",
        "ledger_line_moves_balance",
        "ledger_balance_opened",
        "ledger_account_fixed",
        "ledger_account_opens_balance",
    )
]


def copy_sides(apps, schema_editor):
    """Existing balance rows learn their account's side before the triggers rely on it."""
    Balance = apps.get_model("ledger", "Balance")
    Balance.objects.filter(account__kind__in=DEBIT_NORMAL).update(debit_normal=True)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # the SQL has % of its own
    elif vendor == "sqlite":
        for sql in SQLITE:
            schema_editor.execute(sql)
    else:
        raise RuntimeError(f"no ledger triggers for {vendor}: balances would not be kept")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in [POSTGRES_DROP] if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_triggers_plan_each_time")]

    operations = [
        migrations.AddField(model_name="balance", name="debit_normal", field=models.BooleanField(default=False)),
        migrations.RunPython(copy_sides, migrations.RunPython.noop),
        migrations.RunPython(install, uninstall),
    ]
