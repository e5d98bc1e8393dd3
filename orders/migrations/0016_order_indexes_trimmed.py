"""Fewer indexes on orders_order (issue 17, h-place4): every order placed and every status move
writes each index of the table, and the planner weighs each in every statement that reads it.

- buyer_id and agent_id lose their own indexes: the unique (buyer_id, idempotency_key) index and
  order_agent_time_idx (agent_id, created_at) lead with those columns and serve their lookups;
- status and guest_email keep a plain index and lose the varchar_pattern_ops twin a CharField's
  db_index adds (nothing filters them by a prefix); the new indexes are built before the old go;
- source loses both: nothing filters on it (the share report groups an agent's sales by it).
No constraint changes; the unique and partial indexes stay.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_user_is_agent_backfill'),
        ('catalog', '0011_batch_received_from_supplier'),
        ('compliance', '0008_minor_limits_seed'),
        ('orders', '0015_delivery_email_due_idx'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='order',
            index=models.Index(fields=['status'], name='order_status_idx'),
        ),
        migrations.AddIndex(
            model_name='order',
            index=models.Index(fields=['guest_email'], name='order_guest_email_idx'),
        ),
        # The foreign key itself is kept as it is (a plain AlterField would drop and re-add it, and
        # re-check every row): only its index goes.
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
        # re-check every row): only its index goes.
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
            name='guest_email',
            field=models.EmailField(blank=True, max_length=254, verbose_name='guest email'),
        ),
        migrations.AlterField(
            model_name='order',
            name='source',
            field=models.CharField(blank=True, editable=False, max_length=40, verbose_name='source'),
        ),
        migrations.AlterField(
            model_name='order',
            name='status',
            field=models.CharField(choices=[('pending', 'Awaiting payment'), ('paid', 'Paid, delivering'), ('delivered', 'Delivered'), ('expired', 'Expired (not paid in time)'), ('cancelled', 'Cancelled'), ('refund_pending', 'Paid, to be refunded'), ('refunded', 'Refunded')], default='pending', max_length=16, verbose_name='status'),
        ),
    ]
