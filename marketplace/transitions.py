"""State machines as data, with one guarded transition function.

A model's status is a ``TextChoices`` field; its allowed moves are a ``StateMachine``
(a table from each state to the states it may move to), declared next to the model with
``model=`` (which registers it: ``machine_for``; a test fails on a model with a status and no
machine). A status changes only through its machine:

- ``StateMachine.apply`` moves one row the caller has locked (``select_for_update``): it
  refuses an illegal move, is a no-op on a repeat, writes a history row and queues side
  effects for after the commit;
- ``StateMachine.move_all`` moves every row of a queryset still in one state with one guarded
  UPDATE (claims, leases, stock moves): it refuses a move the table forbids before touching
  anything and writes the history rows in bulk.

Nothing else writes a status (``tests/test_state_machines.py`` scans the source for it).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import cast

from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.models import sql
from django.utils import timezone
from django.utils.encoding import force_str
from django.utils.translation import gettext_lazy as _

from . import rows
from .errors import Conflict


@cache
def _choice_labels(field: models.Field) -> dict:
    return dict(field.flatchoices)


def choice_display(instance: models.Model, name: str) -> str:
    """``instance.get_<name>_display()`` as Django answers it (the choice's label in the active
    language, the value itself when it is not a choice), with the field's choices made a
    dictionary once per process: Django's builds it on every call, hashing each lazy label,
    i.e. one translation lookup per choice (an order page shows a dozen statuses)."""
    field = cast(models.Field, instance._meta.get_field(name))
    value = getattr(instance, field.attname)
    return force_str(_choice_labels(field).get(value, value), strings_only=True)


class IllegalTransition(Conflict):
    """A status move the machine does not allow (someone else acted first, or a wrong button)."""

    code = "illegal_transition"

    def __init__(self, instance: models.Model | type[models.Model], src: str, dst: str):
        # An instance (``apply``), or the model when rows move in bulk (``move_all``).
        subject = (
            f"{instance.__name__} rows" if isinstance(instance, type) else f"{type(instance).__name__} {instance.pk}"
        )
        super().__init__(f"{subject}: {src} -> {dst} is not allowed")
        self.src, self.dst = src, dst


# Every model's machine, registered by ``StateMachine(model=...)`` when its module is imported
# (the machines live in the models' own ``models.py``, so they are all here once apps are ready).
_MACHINES: dict[type[models.Model], "StateMachine"] = {}


def machine_for(model: type[models.Model]) -> "StateMachine | None":
    return _MACHINES.get(model)


def machines() -> dict[type[models.Model], "StateMachine"]:
    return dict(_MACHINES)


@dataclass(frozen=True)
class StateMachine:
    transitions: Mapping[str, frozenset[str]]
    history_model: type[models.Model] | None = None
    history_fk: str = ""
    status_field: str = "status"
    # Timestamp fields stamped when a state is entered, e.g. {"paid": "paid_at"}.
    entered_at: Mapping[str, str] = field(default_factory=dict)
    # The model whose status this machine moves: registers the machine (``machine_for``).
    model: type[models.Model] | None = None

    def __post_init__(self):
        if self.model is None:
            return
        if _MACHINES.get(self.model, self) is not self:
            raise RuntimeError(f"{self.model.__name__} has two state machines")
        _MACHINES[self.model] = self

    def can(self, src: str, dst: str) -> bool:
        return dst in self.transitions.get(src, frozenset())

    def require(self, src: str, dst: str) -> None:
        """Raise ``IllegalTransition`` unless the table allows ``src -> dst`` (for a raw SQL
        move that cannot go through ``move_all``, such as the stock claim)."""
        if not self.can(src, dst):
            raise IllegalTransition(self.model or models.Model, src, dst)

    def apply(
        self,
        instance: models.Model,
        dst: str,
        *,
        actor=None,
        note: str = "",
        update: Mapping[str, object] | None = None,
        on_commit: Iterable[Callable[[], object]] = (),  # what they return is ignored
        along: rows.Pair | rows.Row | rows.PairAndRow | None = None,
    ) -> bool:
        """Move ``instance`` (locked by the caller) to ``dst``.

        Returns False when it is already there (a repeat changes nothing, and writes nothing:
        ``along`` neither), raises ``IllegalTransition`` for a move the table does not allow.

        ``along``: new rows that record what moved it (a payment and the notification's log
        row, ``rows.Pair``; a delivery's ledger entry, ``rows.Row``), written with the move: in
        its statement where the move and history are one (below), so only if the row moves;
        after the move and its history row elsewhere.

        On PostgreSQL, for plain models (``marketplace.rows.plain``), the row's UPDATE and its
        history row are one statement, the UPDATE guarded by the status the caller saw: a row
        moved meanwhile by someone who did not lock it is refused (``IllegalTransition``)
        rather than moved again from a stale status, and the instance keeps the values it had
        (status, stamps, ``update``). Elsewhere ``save()`` and ``create()``.
        """
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("transitions run inside a transaction, on a locked row")
        src = getattr(instance, self.status_field)
        if src == dst:
            return False
        if not self.can(src, dst):
            raise IllegalTransition(instance, src, dst)
        fields = {self.status_field: dst, **(update or {})}
        if dst in self.entered_at:
            fields[self.entered_at[dst]] = timezone.now()
        before = {name: getattr(instance, name) for name in fields}
        for name, value in fields.items():
            setattr(instance, name, value)
        using = instance._state.db or router.db_for_write(type(instance), instance=instance)
        if self.history_model is not None and rows.one_statement_ok(using, type(instance), self.history_model):
            history = self.history_model(
                **{self.history_fk: instance}, from_status=src, to_status=dst, actor=actor, note=note[:500]
            )
            if not _move_and_record(instance, src, list(fields), history, using, along):
                # Refused: the instance says what it said before, not a move that never happened.
                for name, value in before.items():
                    setattr(instance, name, value)
                raise IllegalTransition(instance, src, dst)
        else:
            instance.save(update_fields=list(fields))
            if self.history_model is not None:
                self.history_model._default_manager.create(
                    **{self.history_fk: instance}, from_status=src, to_status=dst, actor=actor, note=note[:500]
                )
            if along is not None:
                along.write(using=using)
        for callback in on_commit:
            transaction.on_commit(callback)
        return True

    def move_all(self, queryset: models.QuerySet, src: str, dst: str, *, actor=None, note: str = "", **fields) -> int:
        """Move every row of ``queryset`` that is in ``src`` to ``dst``, setting ``fields`` too,
        in one guarded UPDATE (``... WHERE status = src``). Returns how many rows moved.

        A move the table forbids raises ``IllegalTransition`` before anything is written; a
        repeat (``src == dst``) moves nothing. With a history model the UPDATE returns the
        ids it moved and their history rows are written with one ``bulk_create``; without one
        it is exactly the ``.update()`` it replaces (no extra query: the purchase path).
        """
        if src == dst:
            return 0
        if not self.can(src, dst):
            raise IllegalTransition(queryset.model, src, dst)
        values = {self.status_field: dst, **fields}
        if dst in self.entered_at:
            values.setdefault(self.entered_at[dst], timezone.now())
        rows = queryset.filter(**{self.status_field: src})
        if self.history_model is None:
            return rows.update(**values)
        using = getattr(queryset, "_db", None) or router.db_for_write(queryset.model)  # where .update() writes
        with transaction.atomic(using=using, savepoint=False):
            ids = _update_returning_ids(rows, values, using)
            self.history_model._default_manager.using(using).bulk_create(
                [
                    self.history_model(
                        **{f"{self.history_fk}_id": pk}, from_status=src, to_status=dst, actor=actor, note=note[:500]
                    )
                    for pk in ids
                ]
            )
        return len(ids)


def _move_and_record(
    instance: models.Model,
    src: str,
    names: list[str],
    history: models.Model,
    using: str,
    along: rows.Pair | rows.Row | rows.PairAndRow | None,
) -> bool:
    """``instance.save(update_fields=names)`` guarded by ``status = src``, and ``history``
    inserted only if the row moved, in one statement (PostgreSQL: ``WITH moved AS (UPDATE ...
    RETURNING) INSERT ... SELECT ... FROM moved``). Values are prepared as ``save()`` does.
    With ``along`` its rows are inserted by the same statement, from ``moved`` too.
    Returns whether the row moved (and its history row, and ``along``'s, were written)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = instance._meta
    sets, params = [], []
    for name in names:
        field = cast(models.Field, meta.get_field(name))
        sets.append(f"{qn(field.column)} = %s")
        params.append(field.get_db_prep_save(field.pre_save(instance, False), connection))
    status = cast(models.Field, meta.get_field(names[0]))  # the status field comes first (``apply``)
    pk = qn(meta.pk.column)
    history_pk = qn(history._meta.pk.column)
    columns, values, insert_params = rows.insert_parts(history, connection)
    moved = (
        f"moved AS (UPDATE {qn(meta.db_table)} SET {', '.join(sets)} "  # noqa: S608 (no user input)
        f"WHERE {pk} = %s AND {qn(status.column)} IS NOT DISTINCT FROM %s RETURNING {pk})"
    )
    record = f"INSERT INTO {qn(history._meta.db_table)} ({columns}) SELECT {values} FROM moved RETURNING {history_pk}"  # noqa: S608
    params += [instance.pk, src, *insert_params]
    if along is None:
        statement = f"WITH {moved} {record}"
    else:
        # The history row's id comes back with the pair's last INSERT (a scalar subquery of its
        # CTE): all its rows are written when the order moves, none when it does not. A single
        # row (``rows.Row``) has no CTE of its own: it is the statement's end.
        head, tail, pair_params = along.sql(connection, source="moved")
        heads = f"{moved}, h AS ({record}), {head}" if head else f"{moved}, h AS ({record})"
        statement = f"WITH {heads} {tail}, (SELECT {history_pk} FROM h)"  # noqa: S608
        params += pair_params
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return False
    if along is not None:
        along.saved(row, using)
    rows.saved(history, row[-1], using)
    return True


def _update_returning_ids(queryset: models.QuerySet, values: dict[str, object], using: str) -> list:
    """``queryset.update(**values)``, compiled by Django as it would be, plus ``RETURNING`` the
    primary keys of the rows it changed (PostgreSQL, and SQLite from 3.35)."""
    query = cast(sql.UpdateQuery, queryset.query.chain(sql.UpdateQuery))
    query.add_update_values(values)
    query.clear_select_clause()
    statement, params = query.get_compiler(using).as_sql()
    if not statement:
        return []
    pk = queryset.model._meta.pk.column
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {connection.ops.quote_name(pk)}", params)
        return [row[0] for row in cursor.fetchall()]


def table(spec: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {src: frozenset(dsts) for src, dsts in spec.items()}


class StatusChange(models.Model):
    """The history row ``StateMachine.apply`` writes. A subclass adds the foreign key to its
    subject (named by ``subject``, the machine's ``history_fk``) and ``from_status`` /
    ``to_status`` with its own choices."""

    subject = ""
    from_status: str  # each subclass declares these two fields, with its own choices
    to_status: str

    at = models.DateTimeField(_("time"), auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        abstract = True
        ordering = ("at", "id")
        verbose_name = _("status change")
        verbose_name_plural = _("status history")

    def __str__(self):
        return f"{getattr(self, self.subject + '_id')}: {self.from_status or '∅'} → {self.to_status}"
