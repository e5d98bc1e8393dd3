"""Indexes of the journal no query uses, dropped (issue 17, h-idx): each is written for every entry
or line posted (a purchase posts two entries of two lines), and every planning of a statement
that reads the table opens it.

- ledger_entry: the varchar_pattern_ops twins of kind, reference and idempotency_key. Nothing
  filters those by a prefix (no startswith, regex or LIKE on them; the admin's search is
  icontains, which no btree serves); their plain and unique indexes stay for the equality
  lookups (the idempotency probe, an order's entries by reference, the kind filter).
- ledger_line: account_id's own index. ledger_line_account_idx (account_id, entry_id) leads with
  it and serves an account's lines and the PROTECT check of an account delete.
Only indexes are dropped, nothing is built; the foreign key stays as it is.
"""

import django.db.models.deletion
from django.db import migrations, models

from marketplace.pgindexes import DropPatternOpsIndexes


class Migration(migrations.Migration):

    dependencies = [
        ("ledger", "0005_lines_unsealed_per_statement"),
    ]

    operations = [
        DropPatternOpsIndexes(
            "ledger_entry",
            {
                "kind": "ledger_entry_kind_36a98d3d_like",
                "reference": "ledger_entry_reference_c09d11b2_like",
                "idempotency_key": "ledger_entry_idempotency_key_d7fe082d_like",
            },
        ),
        # The foreign key itself is kept as it is (a plain AlterField would drop and re-add it, and
        # check every row again): only its index goes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="line",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lines",
                        to="ledger.account",
                        verbose_name="account",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "ledger_line_account_id_a3112da4"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "ledger_line_account_id_a3112da4" ON "ledger_line" ("account_id")',
                ),
            ],
        ),
    ]
