"""电子商务法 第三十一条: transaction records are kept at least three years from the transaction's
completion. PostgreSQL refuses any DELETE on these tables, whatever code talks to it (the
ledger's own triggers, ledger/migrations/0002, already make it append-only); a published
agreement version cannot be deleted either. A person's data is anonymised instead
(``aftersales.services.accounts.account_close``).

Only PostgreSQL: SQLite (the development default) empties tables with DELETE between tests, so
there the Python guard (``legal.retention``) stands in. TRUNCATE (the test runner's flush) does
not fire DELETE triggers.
"""

from django.db import migrations

# Frozen here (a migration must not change when the code does); legal.retention has the same list.
TABLES = [
    "orders_order",
    "orders_orderstatuschange",
    "orders_ordercode",
    "orders_codereveal",
    "orders_ordershare",
    "payments_recharge",
    "payments_rechargestatuschange",
    "payments_notification",
    "payments_payment",
    "payments_refund",
    "payments_refundstatuschange",
    "aftersales_ticket",
    "aftersales_ticketstatuschange",
    "aftersales_ticketmessage",
    "aftersales_refundrequest",
    "aftersales_refundrequeststatuschange",
    "aftersales_reissue",
    "aftersales_arbitrationcase",
    "aftersales_arbitrationcasestatuschange",
    "compliance_auditevent",
    "legal_agreementacceptance",
]

FUNCTION = """
CREATE FUNCTION retention_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'records of % are kept at least three years (电子商务法 第三十一条): DELETE refused', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE FUNCTION retention_refuse_published_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NOT NULL THEN
        RAISE EXCEPTION 'a published agreement version is kept: DELETE refused'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER legal_agreementversion_retained BEFORE DELETE ON legal_agreementversion
    FOR EACH ROW EXECUTE FUNCTION retention_refuse_published_delete();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # legal.retention's Python guard stands in (see the module's docstring)
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_retained BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION retention_refuse_delete()"
        )


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER {table}_retained ON {table}")
    schema_editor.execute("DROP TRIGGER legal_agreementversion_retained ON legal_agreementversion")
    schema_editor.execute("DROP FUNCTION retention_refuse_published_delete()")
    schema_editor.execute("DROP FUNCTION retention_refuse_delete()")


class Migration(migrations.Migration):
    dependencies = [
        ("legal", "0001_initial"),
        ("orders", "0010_order_buyer_device_pending_indexes"),
        ("payments", "0006_status_history"),
        ("aftersales", "0011_credit_appeal_kind"),
        ("compliance", "0006_credit_rating"),
    ]
    operations = [migrations.RunPython(install, uninstall)]
