"""Read replicas for the heavy readers (issue 17): the regulator reports and the trust centre's
figures read months of orders, payments and ledger lines and write a few rows. With
``REPLICA_DATABASE_URL`` set (a PostgreSQL streaming replica), the reads made inside
``replica_reads()`` go to the ``replica`` alias; everything else, every write and every read
outside the block, stays on ``default``.

Opt-in per block, not per app: a report reads other apps' models (orders, payments, ledger), and
the same models are read by the sale itself, which must see its own writes. Only a block that
reads what is already settled (a period that has ended, hourly figures) may use the replica: a
replica is seconds behind, and it cannot lock rows (never ``select_for_update()`` inside).

Without a replica configured the block does nothing: one machine, the tests, the demo."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections

REPLICA = "replica"

_reading: ContextVar[bool] = ContextVar("replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.databases


@contextmanager
def replica_reads() -> Iterator[str]:
    """Route the ORM's reads inside the block to the replica, if there is one. Yields the alias
    the reads go to (for raw SQL: ``connections[alias].cursor()``)."""
    token = _reading.set(True)
    try:
        yield REPLICA if replica_configured() else "default"
    finally:
        _reading.reset(token)


class ReplicaRouter:
    """DATABASE_ROUTERS: reads inside ``replica_reads()`` to the replica; the rest has no opinion
    (Django's default: the ``default`` alias)."""

    def db_for_read(self, model, **hints) -> str | None:
        if _reading.get() and replica_configured():
            return REPLICA
        return None

    def db_for_write(self, model, **hints) -> str | None:
        return None

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # The replica holds the same rows as the primary: an object read there may be related to
        # one read on the primary (a report row's generated_by user, for instance).
        return True if {obj1._state.db, obj2._state.db} <= {"default", REPLICA, None} else None

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool | None:
        # The replica follows the primary's WAL: never migrated on its own.
        return False if db == REPLICA else None
