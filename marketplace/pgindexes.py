"""A migration operation that drops the ``varchar_pattern_ops`` twin PostgreSQL's backend builds
beside the index of every indexed (or unique) ``CharField`` (issue 17).

Django gives ``<index>_like`` to each such column so that a case-sensitive ``startswith`` (``LIKE
'x%'``) can use an index under a non-C collation. A column nobody filters by a prefix pays for it
on every row written, and every planning of a statement that reads the table opens it. Django has
no model option to leave it out, so the model state does not change: only the index goes.

PostgreSQL only (SQLite has no such index); reversible (the twin is built again as Django built
it). A plain ``RunSQL`` would also run on SQLite, where the reverse's ``varchar_pattern_ops``
does not parse.
"""

from __future__ import annotations

from django.db import router
from django.db.migrations.operations.base import Operation


class DropPatternOpsIndexes(Operation):
    """``DropPatternOpsIndexes("orders_order", {"status": "orders_order_status_445594e5_like"})``:
    the twins of a table, by column, named as the database has them (``\\di``)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, table: str, indexes: dict[str, str]):
        self.table = table
        self.indexes = dict(indexes)

    def deconstruct(self):
        return (self.__class__.__qualname__, [], {"table": self.table, "indexes": self.indexes})

    def state_forwards(self, app_label, state):
        pass  # not in the model state: Django adds the twin by itself, it has no option for it

    def _applies(self, app_label, schema_editor) -> bool:
        connection = schema_editor.connection
        return connection.vendor == "postgresql" and router.allow_migrate(connection.alias, app_label)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if self._applies(app_label, schema_editor):
            for name in self.indexes.values():
                schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if self._applies(app_label, schema_editor):
            q = schema_editor.quote_name
            for column, name in self.indexes.items():
                schema_editor.execute(
                    f"CREATE INDEX IF NOT EXISTS {q(name)} ON {q(self.table)} ({q(column)} varchar_pattern_ops)"
                )

    def describe(self):
        return f"Drop the varchar_pattern_ops indexes of {self.table} ({', '.join(self.indexes)}) (PostgreSQL only)"

    @property
    def migration_name_fragment(self):
        return f"{self.table}_pattern_ops_dropped"
