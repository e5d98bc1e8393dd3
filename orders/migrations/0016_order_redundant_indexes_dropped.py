"""Redundant indexes of orders_order dropped (issue 17, h-place4): each index of the table is
written by every order placed and every status move (a status UPDATE is never HOT here).

- buyer_id and agent_id lose their own indexes: the unique (buyer_id, idempotency_key) index and
  order_agent_time_idx (agent_id, created_at) lead with those columns and serve their lookups;
- source loses both of its indexes (plain and varchar_pattern_ops): nothing filters on it (the
  share report groups an agent's own sales by it, found by order_agent_time_idx).
Only indexes are dropped, nothing is built: no constraint changes, the foreign keys stay.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_user_is_agent_backfill'),
        ('orders', '0015_delivery_email_due_idx'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The foreign key itself is kept as it is (a plain AlterField would drop and re-add it, and
        # check every row again): only its index goes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='order',
                    name='agent',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='sales', to='agents.agent', verbose_name='agent'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "orders_order_agent_id_14de1c81"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "orders_order_agent_id_14de1c81" ON "orders_order" ("agent_id")',
                ),
            ],
        ),
        # The foreign key itself is kept as it is (a plain AlterField would drop and re-add it, and
        # check every row again): only its index goes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='order',
                    name='buyer',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='orders', to=settings.AUTH_USER_MODEL, verbose_name='buyer'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "orders_order_buyer_id_26195532"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "orders_order_buyer_id_26195532" ON "orders_order" ("buyer_id")',
                ),
            ],
        ),
        migrations.AlterField(
            model_name='order',
            name='source',
            field=models.CharField(blank=True, editable=False, max_length=40, verbose_name='source'),
        ),
    ]
