"""order_total_is_subtotal_less_discount compares total with ROUND(subtotal - discount, 2).

SQLite, the embedded default of `dev.py up`, keeps decimals as binary floats, where
10.10 - 0.30 is 9.799999999999999 and not 9.80: every order with a coupon whose amounts did not
subtract exactly in binary was refused by the check there. On PostgreSQL both sides are
numeric(12, 2), so the rounded check accepts and refuses exactly the rows the old one did.

On PostgreSQL the new check is added NOT VALID and validated in a transaction of its own
(the migration is not atomic): adding it takes the table's exclusive lock only for the moment
the catalogue changes, and the validation's scan of every order runs under a lock that lets
purchases go on (SHARE UPDATE EXCLUSIVE). The old check stays until the new one is in place, so
no moment is without one. Other databases drop and add it as Django does."""

from django.db import migrations, models
from django.db.models.functions import Round

NAME = "order_total_is_subtotal_less_discount"
OLD = models.CheckConstraint(condition=models.Q(total=models.F("subtotal") - models.F("discount")), name=NAME)
NEW = models.CheckConstraint(condition=models.Q(total=Round(models.F("subtotal") - models.F("discount"), 2)), name=NAME)


class ReplaceCheck(migrations.operations.base.Operation):
    """Replaces the order's check `old` with `new` (same name)."""

    reversible = True

    def __init__(self, old, new):
        self.old, self.new = old, new

    def deconstruct(self):
        return self.__class__.__name__, [self.old, self.new], {}

    def state_forwards(self, app_label, state):
        state.remove_constraint(app_label, "order", self.old.name)
        state.add_constraint(app_label, "order", self.new)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        before = from_state.apps.get_model(app_label, "order")
        after = to_state.apps.get_model(app_label, "order")
        if schema_editor.connection.vendor != "postgresql":
            schema_editor.remove_constraint(before, self.old)
            schema_editor.add_constraint(after, self.new)
            return
        table = schema_editor.quote_name(after._meta.db_table)
        staging = self.new.name + "_new"
        check = models.CheckConstraint(condition=self.new.condition, name=staging)
        for statement in (
            f"ALTER TABLE {table} ADD {check.constraint_sql(after, schema_editor)} NOT VALID",
            f"ALTER TABLE {table} VALIDATE CONSTRAINT {staging}",
            f"ALTER TABLE {table} DROP CONSTRAINT {self.old.name}",
            f"ALTER TABLE {table} RENAME CONSTRAINT {staging} TO {self.new.name}",
        ):
            schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        ReplaceCheck(self.new, self.old).database_forwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        return f"Replace check {self.old.name} on order"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orders", "0017_order_like_twins_dropped"),
    ]

    operations = [ReplaceCheck(OLD, NEW)]
