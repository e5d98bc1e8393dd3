"""Rows written as Django writes them, in fewer statements (PostgreSQL).

Django's ``save()`` and ``create()`` send one statement per row. Where two rows of one business
change are written together (a status move and its history row, a payment and the
notification that recorded it), PostgreSQL writes both in one statement with a data-modifying
``WITH``. The values are prepared exactly as ``save()`` prepares them (each field's
``pre_save`` then ``get_db_prep_save``: ``auto_now_add`` stamps, defaults, conversions), so
the rows are the same; only the round trips differ.

Only for plain models: no ``save()`` of their own, no ``pre_save``/``post_save`` receivers
(which these statements would not run), no multi-table inheritance. ``plain`` says whether a
model qualifies; callers keep the ORM path for the others and for other databases.

Reads by a unique column (``read_one``, and ``lock_one`` with FOR UPDATE) are the other use: a
statement of constant text built once per process, where the ORM compiles its query on each call.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connections, models, router
from django.db.models import signals
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=models.Model)

_PLAIN: dict[type[models.Model], bool] = {}


def one_statement_ok(using: str, *model_types: type[models.Model]) -> bool:
    """Whether rows of these models may be written by this module on database ``using``."""
    return postgres(using) and all(plain(m) for m in model_types)


def postgres(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def plain(model: type[models.Model]) -> bool:
    known = _PLAIN.get(model)
    if known is None:
        meta = model._meta
        known = _PLAIN[model] = model.save is models.Model.save and not meta.parents and not meta.proxy and meta.managed
    # Receivers can be connected at any time: asked each call (a dictionary look-up when none).
    return known and not signals.pre_save.has_listeners(model) and not signals.post_save.has_listeners(model)


def insert_parts(obj: models.Model, connection, *, computed: dict[str, str] | None = None) -> tuple[str, str, list]:
    """(columns, values, params) of ``obj``'s INSERT as ``save()`` would write it: every
    concrete field but a database-generated primary key. ``computed`` gives SQL expressions
    (no parameters) for some attnames instead of the object's values. The text is worked out
    once per model (``_insert_shape``); each call prepares the values only."""
    fields, columns, values = _insert_shape(type(obj), connection, computed or {})
    params = []
    for field, kind in fields:
        # with a ``kind``, ``pre_save`` is the attribute (``PLAIN_VALUE_TYPES``)
        value = getattr(obj, field.attname) if kind is not None else field.pre_save(obj, True)
        params.append(prep_save(field, kind, value, connection))
    return columns, values, params


# Fields whose ``pre_save`` is the attribute and whose ``get_db_prep_save`` returns a value of
# this exact type (or None) as it is, whatever the database: ``CharField.to_python`` of an
# ``str``, ``BooleanField.to_python`` of a ``bool``. Not integers: a backend may wrap them
# (``adapt_integerfield_value``, psycopg 3). Exact classes only (a subclass may convert);
# tests/test_rows.py checks each against the ORM.
PLAIN_VALUE_TYPES: dict[type[models.Field], type] = {
    models.CharField: str,
    models.TextField: str,
    models.EmailField: str,
    models.URLField: str,
    models.SlugField: str,
    models.BooleanField: bool,
}


def value_type(field: models.Field) -> type | None:
    """The type whose values ``field`` writes unchanged (``PLAIN_VALUE_TYPES``), or None."""
    return PLAIN_VALUE_TYPES.get(type(field))


def prep_save(field: models.Field, kind: type | None, value, connection):
    """``field.get_db_prep_save(value, connection)``; ``kind`` is ``value_type(field)``, and a
    value of exactly that type (or None) is returned as it is, without the call: what the
    preparation would return."""
    if kind is not None and (value is None or type(value) is kind):
        return value
    return field.get_db_prep_save(value, connection)


_INSERT_SHAPES: dict[tuple, tuple[tuple[tuple[models.Field, type | None], ...], str, str]] = {}


def _insert_shape(model: type[models.Model], connection, computed: dict[str, str]) -> tuple:
    """(the fields whose values are parameters, each with its ``value_type``, the columns' text,
    the values' text) of an INSERT of ``model``: constant per model, database vendor and ``computed``."""
    key = (model, connection.vendor, tuple(sorted(computed.items())))
    shape = _INSERT_SHAPES.get(key)
    if shape is None:
        qn = connection.ops.quote_name
        fields, columns, values = [], [], []
        for field in model._meta.local_concrete_fields:
            if field.primary_key and getattr(field, "db_returning", False):
                continue
            columns.append(qn(field.column))
            if field.attname in computed:
                values.append(computed[field.attname])
            else:
                values.append("%s")
                fields.append((field, value_type(field)))
        shape = _INSERT_SHAPES[key] = (tuple(fields), ", ".join(columns), ", ".join(values))
    return shape


def insert_rows(objs: Sequence[models.Model], *, using: str) -> None:
    """INSERT ``objs`` (of one model) in one statement of constant shape, each row as ``save()``
    would write it (``insert_parts``), where ``bulk_create`` compiles its query on each call. No
    RETURNING: an object whose primary key the database generates does not learn it (the caller
    must not need it); the others are marked saved."""
    connection = connections[using]
    model = type(objs[0])
    values, params = [], []
    for obj in objs:
        columns, row_values, row_params = insert_parts(obj, connection)
        values.append(f"({row_values})")
        params += row_params
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join(values)}", params)  # noqa: S608 (names from the model, values bound)
    pk = model._meta.pk
    if not getattr(pk, "db_returning", False):
        for obj in objs:
            saved(obj, obj.pk, using)


_Typed = list[tuple[models.Field, type | None]]
_VALUES_SQL: dict[tuple[type[models.Model], tuple[str, ...], str], tuple[str, _Typed]] = {}


def insert_values(
    model: type[models.Model], attnames: tuple[str, ...], values: Sequence[Sequence], *, using: str
) -> None:
    """INSERT rows of ``model`` given as tuples of values for ``attnames``, in one statement,
    without building an instance per row: each value prepared as ``save()`` prepares it
    (``get_db_prep_save``). ``attnames`` must name every concrete field but a database-generated
    primary key, and none whose ``pre_save`` computes a value (``auto_now``, file fields): the
    caller gives each value as the row's. The statement's head is built once per process."""
    connection = connections[using]
    key = (model, attnames, connection.vendor)
    prepared = _VALUES_SQL.get(key)
    if prepared is None:
        prepared = _VALUES_SQL[key] = _prepare_values(model, attnames, connection)
    head, fields = prepared
    row = f"({', '.join(['%s'] * len(fields))})"
    params = []
    for given in values:
        params += [prep_save(f, kind, value, connection) for (f, kind), value in zip(fields, given, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(head + ", ".join([row] * len(values)), params)


def _prepare_values(model: type[models.Model], attnames: tuple[str, ...], connection) -> tuple[str, list]:
    meta = model._meta
    fields = {f.attname: f for f in meta.local_concrete_fields}
    needed = {a for a, f in fields.items() if not (f.primary_key and getattr(f, "db_returning", False))}
    if set(attnames) != needed or len(attnames) != len(needed):
        raise ValueError(f"insert_values({model.__name__}) needs exactly {sorted(needed)}, got {list(attnames)}")
    named = [fields[a] for a in attnames]
    computed = [f.attname for f in named if type(f).pre_save is not models.Field.pre_save]
    if computed:
        raise ValueError(f"insert_values({model.__name__}): {computed} compute their value in pre_save")
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in named)
    typed = [(f, value_type(f)) for f in named]
    return f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ", typed  # noqa: S608 (names from the model)


def saved(obj: models.Model, pk, using: str) -> None:
    """Mark ``obj`` as its row, written with primary key ``pk`` (what ``save()`` does after)."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = using


def insert_pair(first: models.Model, second: models.Model, *, link: str, using: str) -> None:
    """INSERT ``first``, then ``second`` whose foreign key ``link`` points at ``first``, in one
    statement; both objects get their primary keys. A constraint either breaks raises as the
    ORM's INSERT would (IntegrityError), and neither row is written."""
    connection = connections[using]
    pair = Pair(first, second, link=link)
    head, tail, params = pair.sql(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {head} {tail}", params)
        pair.saved(cursor.fetchone(), using)


@dataclass(frozen=True)
class Pair:
    """Two new rows of one business change, ``second``'s foreign key ``link`` pointing at
    ``first`` (a payment and the notification's log row that applied it). Written by
    ``write``, or by a caller that chains ``sql`` into a statement of its own (the state
    machine's move: ``StateMachine.apply(along=...)``)."""

    first: models.Model
    second: models.Model
    link: str

    def write(self, *, using: str | None = None) -> None:
        """Both rows: one statement on PostgreSQL for plain models (``insert_pair``), else
        ``save()`` each, ``first`` first."""
        using = using or router.db_for_write(type(self.first), instance=self.first)
        if one_statement_ok(using, type(self.first), type(self.second)):
            insert_pair(self.first, self.second, link=self.link, using=using)
            return
        self.first.save(using=using)
        setattr(self.second, self.link, self.first)
        self.second.save(using=using)

    def sql(self, connection, *, source: str = "") -> tuple[str, str, list]:
        """(``a AS (INSERT first ...)``, ``INSERT second ... SELECT ... FROM a RETURNING
        second's pk, its link``, params): a ``WITH`` clause's entry and the statement's end.
        With ``source`` (an earlier entry's name) ``first`` is inserted once per row of it
        (``INSERT ... SELECT ... FROM source``): not at all when it returned none."""
        qn = connection.ops.quote_name
        first, second = self.first, self.second
        a_cols, a_vals, a_params = insert_parts(first, connection)
        link_field = second._meta.get_field(self.link)
        b_cols, b_vals, b_params = insert_parts(second, connection, computed={link_field.attname: "a.pk"})
        a_pk, b_pk = qn(first._meta.pk.column), qn(second._meta.pk.column)
        rows = f"SELECT {a_vals} FROM {source}" if source else f"VALUES ({a_vals})"  # noqa: S608 (names, no values)
        head = f"a AS (INSERT INTO {qn(first._meta.db_table)} ({a_cols}) {rows} RETURNING {a_pk} AS pk)"
        tail = (
            f"INSERT INTO {qn(second._meta.db_table)} ({b_cols}) SELECT {b_vals} FROM a "  # noqa: S608
            f"RETURNING {b_pk}, {qn(link_field.column)}"
        )
        return head, tail, a_params + b_params

    def saved(self, row: Sequence, using: str) -> None:
        """Both objects marked as their rows, from the (second's pk, first's pk) ``sql`` returns."""
        second_pk, first_pk = row[0], row[1]
        saved(self.first, first_pk, using)
        saved(self.second, second_pk, using)
        setattr(self.second, self.link, self.first)


@dataclass(frozen=True)
class Row:
    """One new row of a business change that its caller writes with a statement of its own (a
    delivery's ledger entry, whose lines are already written, with the order's move):
    ``Pair``'s interface for a single row, so ``StateMachine.apply(along=...)`` takes either.
    Its ``sql`` reads back the primary key the database gives (a balance payment's)."""

    obj: models.Model

    def write(self, *, using: str | None = None) -> None:
        """The row: one INSERT of constant text on PostgreSQL for a plain model whose key is set
        before (``insert_rows``: a UUID), else ``save(force_insert=True)``, which learns it."""
        using = using or router.db_for_write(type(self.obj), instance=self.obj)
        if self.obj.pk is not None and one_statement_ok(using, type(self.obj)):
            insert_rows([self.obj], using=using)
        else:
            self.obj.save(using=using, force_insert=True)

    def sql(self, connection, *, source: str = "") -> tuple[str, str, list]:
        """``Pair.sql``'s shape: ("", ``INSERT obj ... SELECT ... FROM source RETURNING pk``,
        params). No ``WITH`` entry of its own (the head is empty); with ``source`` the row is
        inserted once per row of it: not at all when it returned none."""
        qn = connection.ops.quote_name
        meta = self.obj._meta
        columns, values, params = insert_parts(self.obj, connection)
        rows = f"SELECT {values} FROM {source}" if source else f"VALUES ({values})"  # noqa: S608 (names, no values)
        tail = f"INSERT INTO {qn(meta.db_table)} ({columns}) {rows} RETURNING {qn(meta.pk.column)}"
        return "", tail, params

    def saved(self, row: Sequence, using: str) -> None:
        """The object marked as its row, from the pk ``sql`` returns."""
        saved(self.obj, row[0], using)


@dataclass(frozen=True)
class PairAndRow:
    """A ``Pair`` and a ``Row`` of one business change (a payment, the notification's log row
    that applied it, and the ledger entry that books it), written together: in one statement
    by a caller that chains ``sql`` (``StateMachine.apply(along=...)``), else ``write``.
    ``pair`` may be a single ``Row`` too (a balance payment, which has no log row).
    ``row``'s primary key must be set before the INSERT (a UUID): it is not read back."""

    pair: Pair | Row
    row: Row

    def write(self, *, using: str | None = None) -> None:
        self.pair.write(using=using)
        self.row.write(using=using)

    def sql(self, connection, *, source: str = "") -> tuple[str, str, list]:
        """``Pair.sql``'s shape, ``row``'s INSERT a ``WITH`` entry of its own (``r``) before the pair's
        (a single ``Row`` as ``pair`` has none: its INSERT is the statement's end)."""
        head, tail, params = self.pair.sql(connection, source=source)
        _none, row_insert, row_params = self.row.sql(connection, source=source)
        heads = f"r AS ({row_insert}), {head}" if head else f"r AS ({row_insert})"
        return heads, tail, row_params + params

    def saved(self, row: Sequence, using: str) -> None:
        self.pair.saved(row, using)
        saved(self.row.obj, self.row.obj.pk, using)


_SELECT_SQL: dict[tuple[type[models.Model], str, str, bool], tuple] = {}


def lock_one(model: type[M], column_of: str, value, *, using: str) -> M | None:
    """The row of ``model`` whose field ``column_of`` (unique) equals ``value``, locked
    (``SELECT ... FOR UPDATE``) for the caller's transaction, as the instance
    ``model.objects.select_for_update().filter(...).first()`` would build (every concrete field
    loaded, converted as the ORM converts it), or None. PostgreSQL only (``one_statement_ok``):
    constant text built once per process, where the ORM compiles the query on each call."""
    connection = connections[using]
    if not connection.in_atomic_block:  # as the ORM's select_for_update: a lock needs a transaction
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    return _select_one(model, column_of, value, using=using, lock=True)


def read_one(model: type[M], column_of: str, value, *, using: str) -> M | None:
    """The row of ``model`` whose field ``column_of`` (unique) equals ``value``, as the instance
    ``model._default_manager.filter(...).first()`` would build it (every concrete field loaded,
    converted as the ORM converts it), or None. No lock, no transaction needed. Plain SQL with
    the connection's quoting (PostgreSQL, SQLite): constant text built once per process, where the
    ORM compiles the query on each call. The model's default manager must not filter rows."""
    return _select_one(model, column_of, value, using=using, lock=False)


def _select_one(model: type[M], column_of: str, value, *, using: str, lock: bool) -> M | None:
    connection = connections[using]
    key = (model, column_of, connection.vendor, lock)
    prepared = _SELECT_SQL.get(key)
    if prepared is None:
        prepared = _SELECT_SQL[key] = _prepare_select(model, column_of, connection, lock=lock)
    statement, names, converters, where = prepared
    with connection.cursor() as cursor:
        cursor.execute(statement, [where.get_db_prep_value(value, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for i, found, column in converters:
        for converter in found:
            values[i] = converter(values[i], column, connection)
    return model.from_db(using, names, values)


def _prepare_select(model: type[models.Model], column_of: str, connection, *, lock: bool) -> tuple:
    """(statement, attnames, converters by position, the WHERE field) of ``_select_one``."""
    qn = connection.ops.quote_name
    meta = model._meta
    fields = list(meta.concrete_fields)
    where = meta.get_field(column_of)
    if not (where.primary_key or where.unique):  # type: ignore[union-attr]
        raise ValueError(f"{model.__name__}.{column_of} is not unique")
    converters = []
    for i, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((i, found, column))
    statement = (
        f"SELECT {', '.join(qn(f.column) for f in fields)} FROM {qn(meta.db_table)} "  # noqa: S608 (no user input)
        f"WHERE {qn(where.column)} = %s"  # type: ignore[union-attr]
    )
    if lock:
        statement += " FOR UPDATE"
    return statement, [f.attname for f in fields], converters, where


# --- Rows of a model read inside another statement, as JSON ---------------------------------
#
# A page that reads a row and its children (an order, its codes and its history) pays a round
# trip and a query's Python per read. ``json_rows_sql`` is a scalar subquery that carries the
# children in the parent's statement as one JSON text; ``json_rows`` builds from it the instances
# the ORM would have built (every concrete field loaded, ``from_db``). PostgreSQL only. Only for
# fields whose JSON form is exact: integers (keys too), text, booleans, times (which
# PostgreSQL writes in ISO 8601 with their offset) and dates; decimals and JSON fields are
# carried as their text (``::text``: a decimal's digits, a JSON value's text as the driver
# returns it) and converted as the ORM converts them. Anything else is refused when composing.

_JSON_EXACT = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,
    models.BooleanField,
    models.CharField,
    models.TextField,
    models.DateTimeField,
)


def _json_kind(field) -> str:
    target = field.target_field if field.is_relation else field
    if isinstance(target, models.DateTimeField):
        return "time"
    if isinstance(target, models.DateField):
        return "date"
    if isinstance(target, models.DecimalField):
        return "decimal"
    if isinstance(target, models.JSONField):
        return "json"
    if isinstance(target, _JSON_EXACT):
        return "plain"
    raise ValueError(f"{field.model.__name__}.{field.name}: no exact JSON form")


# Carried as text (see above): the column cast in the subquery.
_AS_TEXT = frozenset({"decimal", "json"})


def _json_converter(field, using: str) -> Callable[[Any], Any] | None:
    """How ``json_rows`` turns the JSON value of ``field`` into what the ORM would have loaded."""
    kind = _json_kind(field)
    if kind == "time":
        return datetime.fromisoformat
    if kind == "date":
        return date.fromisoformat
    if kind == "decimal":
        return Decimal
    if kind == "json":  # the driver's text, decoded by the field as the ORM decodes it
        return lambda text: field.from_db_value(text, None, connections[using])  # this thread's connection
    return None


@dataclass(frozen=True)
class _JsonPlan:
    """What ``json_rows`` needs of a model besides the text: its concrete fields' attribute names
    and the converters by position (the ``extra`` times' too)."""

    names: list[str]
    converters: list[tuple[int, Callable[[Any], Any]]]


# By (model, alias, extra): a model's fields do not change in a process. Worked out on every call,
# this was a fifth of the Python of the order page's read (36 fields' kinds per view).
_plans: dict[tuple, _JsonPlan] = {}


def _json_plan(model: type[models.Model], using: str, extra: Sequence[tuple[str, str]]) -> _JsonPlan:
    key = (model, using, tuple(extra))
    plan = _plans.get(key)
    if plan is None:
        fields = model._meta.concrete_fields
        n = len(fields)
        converters = [(i, c) for i, f in enumerate(fields) if (c := _json_converter(f, using)) is not None]
        converters += [(n + i, datetime.fromisoformat) for i, (_name, kind) in enumerate(extra) if kind == "time"]
        plan = _plans[key] = _JsonPlan(names=[f.attname for f in fields], converters=converters)
    return plan


def json_rows_sql(
    model: type[models.Model],
    connection,
    *,
    alias: str,
    link: str,
    to: str,
    order: Sequence[str],
    where: str = "",
    extra: Sequence[str] = (),
    join: str = "",
) -> str:
    """A scalar subquery (its text) of ``model``'s rows as ``alias`` whose field ``link`` equals
    the outer statement's ``to`` (and ``where``, SQL, when given), in the order of the fields
    ``order``: a JSON array (as text; NULL for no rows) of one array per row, the concrete
    fields' columns in their order, then the ``extra`` SQL expressions' (which may name the
    ``join``, SQL after the FROM's table). Read it with ``json_rows``."""
    qn = connection.ops.quote_name
    meta = model._meta
    for field in meta.concrete_fields:
        _json_kind(field)
    columns = [
        f"{alias}.{qn(f.column)}" + ("::text" if _json_kind(f) in _AS_TEXT else "") for f in meta.concrete_fields
    ] + list(extra)
    ordering = ", ".join(f"{alias}.{qn(meta.get_field(name).column)}" for name in order)
    condition = f"{alias}.{qn(meta.get_field(link).column)} = {to}" + (f" AND {where}" if where else "")
    return (
        f"(SELECT json_agg(json_build_array({', '.join(columns)}) ORDER BY {ordering})::text"  # noqa: S608 (names from the model)
        f" FROM {qn(meta.db_table)} {alias}{' ' + join if join else ''} WHERE {condition})"
    )


def json_rows(model: type[M], text: str | None, *, using: str, extra: Sequence[tuple[str, str]] = ()) -> list[M]:
    """The instances of ``json_rows_sql``'s text, as the ORM builds them (``from_db``), each
    with the ``extra`` values set as attributes: ``(name, kind)``, kind ``"plain"`` or ``"time"``."""
    if not text:
        return []
    plan = _json_plan(model, using, extra)
    names, converters = plan.names, plan.converters
    n = len(names)
    objs = []
    for row in json.loads(text):
        for i, convert in converters:
            if row[i] is not None:
                row[i] = convert(row[i])
        obj = model.from_db(using, names, row[:n])
        for (name, _kind), value in zip(extra, row[n:], strict=True):
            setattr(obj, name, value)
        objs.append(obj)
    return objs
