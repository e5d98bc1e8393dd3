"""A migration operation that replaces a CHECK constraint without holding a long lock on
PostgreSQL (the sibling of ``pgindexes``; first used by orders' migration 0018).

Django's ``RemoveConstraint`` then ``AddConstraint`` validates the new check while holding the
table's ACCESS EXCLUSIVE lock: every read and write of the table waits for a scan of all its
rows. On PostgreSQL ``ReplaceCheck`` adds the new check NOT VALID under a staging name (the
exclusive lock only for the moment the catalogue changes), validates it (a scan under SHARE
UPDATE EXCLUSIVE, which lets reads and writes go on), then drops the old check and renames the
new one. The old check stays until the new one is in place, so no moment is without one.

Each statement should run in a transaction of its own, or the first one's lock is held to the
end: use it in a migration with ``atomic = False``. Other databases drop and add the check as
Django does. Reversible (the same steps from ``new`` back to ``old``).
"""

from __future__ import annotations

from django.db import models
from django.db.migrations.operations.base import Operation


class ReplaceCheck(Operation):
    """``ReplaceCheck("order", old, new)``: the check ``old`` of the app's model ``order``
    becomes ``new``, a ``CheckConstraint`` of the same name."""

    reversible = True

    def __init__(self, model_name: str, old: models.CheckConstraint, new: models.CheckConstraint):
        if old.name != new.name:
            raise ValueError("ReplaceCheck keeps the check's name: old and new must share it")
        self.model_name, self.old, self.new = model_name.lower(), old, new

    def deconstruct(self):
        return self.__class__.__qualname__, [self.model_name, self.old, self.new], {}

    def state_forwards(self, app_label, state):
        state.remove_constraint(app_label, self.model_name, self.old.name)
        state.add_constraint(app_label, self.model_name, self.new)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._replace(app_label, schema_editor, from_state, to_state, self.old, self.new)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._replace(app_label, schema_editor, from_state, to_state, self.new, self.old)

    def _replace(self, app_label, schema_editor, from_state, to_state, old, new):
        before = from_state.apps.get_model(app_label, self.model_name)
        after = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, after):
            return
        if schema_editor.connection.vendor != "postgresql":
            schema_editor.remove_constraint(before, old)
            schema_editor.add_constraint(after, new)
            return
        q = schema_editor.quote_name
        table = q(after._meta.db_table)
        staging = new.name + "_new"
        check = models.CheckConstraint(condition=new.condition, name=staging)
        for statement in (
            f"ALTER TABLE {table} ADD {check.constraint_sql(after, schema_editor)} NOT VALID",
            f"ALTER TABLE {table} VALIDATE CONSTRAINT {q(staging)}",
            f"ALTER TABLE {table} DROP CONSTRAINT {q(old.name)}",
            f"ALTER TABLE {table} RENAME CONSTRAINT {q(staging)} TO {q(new.name)}",
        ):
            schema_editor.execute(statement)

    def describe(self):
        return f"Replace check {self.old.name} on {self.model_name}"

    @property
    def migration_name_fragment(self):
        return f"{self.model_name}_{self.old.name.lower()}_replaced"
