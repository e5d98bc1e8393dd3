"""payments_notification.order_number's varchar_pattern_ops twin dropped (issue 17, h-idx): every
gateway notification writes it, and nothing filters order_number by a prefix (no startswith,
regex or LIKE; the admin's search is icontains, which no btree serves). The plain index stays
for the equality lookups (a payment's notifications by order number)."""

from django.db import migrations

from marketplace.pgindexes import DropPatternOpsIndexes


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0006_status_history"),
    ]

    operations = [
        DropPatternOpsIndexes(
            "payments_notification", {"order_number": "payments_notification_order_number_3598ff27_like"}
        ),
    ]
