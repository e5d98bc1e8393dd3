"""orders_order.number's varchar_pattern_ops twin dropped (issue 17; 0017 left it out): every
order placed writes it. Nothing filters the order number by a prefix: the code reads orders by
number with equality and ``number__in`` only (the unique index serves both), and every admin
search on it is a plain search field, ``icontains``, which no btree serves. Dropping the twin
builds nothing, so it blocks writes to orders only for the moment the DROP takes."""

from django.db import migrations

from marketplace.pgindexes import DropPatternOpsIndexes


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0018_order_total_check_rounded"),
    ]

    operations = [
        DropPatternOpsIndexes("orders_order", {"number": "orders_order_number_abc9e0f2_like"}),
    ]
