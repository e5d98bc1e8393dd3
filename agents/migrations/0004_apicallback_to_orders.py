# ApiCallback now lives in orders (orders/migrations/0006_apicallback_from_agents): forget it
# here without touching its table, which orders keeps under the same name.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_withdrawal_reveal_permission"),
        ("orders", "0006_apicallback_from_agents"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="ApiCallback")],
        ),
    ]
