"""order_total_is_subtotal_less_discount compares total with ROUND(subtotal - discount, 2).

SQLite, the embedded default of `dev.py up`, keeps decimals as binary floats, where
10.10 - 0.30 is 9.799999999999999 and not 9.80: every order with a coupon whose amounts did not
subtract exactly in binary was refused by the check there. On PostgreSQL both sides are
numeric(12, 2), so the rounded check accepts and refuses exactly the rows the old one did.

On PostgreSQL the new check is added NOT VALID and validated in a transaction of its own
(the migration is not atomic): adding it takes the table's exclusive lock only for the moment
the catalogue changes, and the validation's scan of every order runs under a lock that lets
purchases go on (SHARE UPDATE EXCLUSIVE). The old check stays until the new one is in place, so
no moment is without one. Other databases drop and add it as Django does. The operation, first
written in this file, is now marketplace.pgchecks.ReplaceCheck."""

from django.db import migrations, models
from django.db.models.functions import Round

from marketplace.pgchecks import ReplaceCheck

NAME = "order_total_is_subtotal_less_discount"
OLD = models.CheckConstraint(condition=models.Q(total=models.F("subtotal") - models.F("discount")), name=NAME)
NEW = models.CheckConstraint(condition=models.Q(total=Round(models.F("subtotal") - models.F("discount"), 2)), name=NAME)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orders", "0017_order_like_twins_dropped"),
    ]

    operations = [ReplaceCheck("order", OLD, NEW)]
