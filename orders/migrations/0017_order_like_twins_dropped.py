"""orders_order's status and guest_email varchar_pattern_ops twins dropped (issue 17, h-idx): each
is written by every order placed, and status's by every status move too. Nothing filters either
by a prefix (no startswith, regex or LIKE; the admin's search on guest_email is icontains, which
no btree serves). Their plain indexes stay for the equality lookups. Dropping a twin builds
nothing, so it blocks writes to orders only for the moment the DROP takes.

Left as they are: number's twin (not part of this change) and orders_codereveal.user_id's index
(the account erasure reads a user's reveals, and a user delete from the admin runs the PROTECT
check on it; no composite index leads with user_id)."""

from django.db import migrations

from marketplace.pgindexes import DropPatternOpsIndexes


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0016_order_redundant_indexes_dropped"),
    ]

    operations = [
        DropPatternOpsIndexes(
            "orders_order",
            {"status": "orders_order_status_445594e5_like", "guest_email": "orders_order_guest_email_b233ca4c_like"},
        ),
    ]
