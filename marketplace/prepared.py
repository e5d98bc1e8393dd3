"""Querysets compiled once per process (PostgreSQL).

Django compiles a queryset to SQL on every evaluation. For the few reads on a hot page whose
shape never changes (the same filters, only the values differ), that compile costs more
Python than the query costs the database. ``Prepared`` compiles such a queryset once per
process and database alias, remembers where the caller's values sit among the parameters, and
afterwards only executes the SQL text with the new values, building the rows exactly as the
ORM builds them (model instances with ``select_related`` objects and annotations, or the
dicts/tuples of ``values()``/``values_list()``): the same objects, without the compile.

    _ORDER = Prepared(lambda number, buyer: Order.objects.filter(number=number, buyer_id=buyer)
                      .select_related("product"), number="K-SAMPLE-0", buyer=987654321)
    order = _ORDER.first(number=no, buyer=user.pk)

The samples must be values that occur nowhere else in the query's parameters (each is found
by equality among them; a sample found nowhere, or two names sharing one value, is refused
when compiling). ``objects(limit=, offset=)`` pages with SQL parameters, so one compiled text
serves every page. On other databases (SQLite in development) the queryset is built and
evaluated as usual: the same results, compiled each time.

Not for querysets with ``prefetch_related`` (their extra queries are not compiled here),
nor for ``select_for_update`` with a limit (the lock clause must come last).
"""

from collections.abc import Callable
from itertools import islice
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import (
    FlatValuesListIterable,
    ModelIterable,
    ValuesIterable,
    ValuesListIterable,
    get_related_populators,
)


class _Compiled:
    __slots__ = (
        "annotations",
        "compiler",
        "composite",
        "converters",
        "end",
        "init_list",
        "iterable",
        "locks",
        "model",
        "names",
        "params",
        "slots",
        "sql",
        "start",
    )

    def __init__(self, queryset: QuerySet, samples: dict[str, Any], using: str) -> None:
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        params = list(params)
        slots: dict[str, list[int]] = {}
        for name, sample in samples.items():
            found = [i for i, p in enumerate(params) if type(p) is type(sample) and p == sample]
            if not found:
                raise ValueError(f"sample {name}={sample!r} does not occur in the query's parameters")
            slots[name] = found
        taken = [i for found in slots.values() for i in found]
        if len(taken) != len(set(taken)):
            raise ValueError("two samples share a value: give each name a distinct sample")
        self.compiler, self.sql, self.params, self.slots = compiler, sql, params, slots
        # What ``results_iter`` works out on every call (each selected expression's converters,
        # about a tenth of a millisecond for a row of twenty columns): worked out here, once.
        fields = [s[0] for s in compiler.select[0 : compiler.col_count]]
        self.converters = compiler.get_converters(fields)
        self.composite = compiler.has_composite_fields(fields)
        self.locks = queryset.query.select_for_update
        self.iterable = queryset._iterable_class
        self.model = None
        if self.iterable is ModelIterable:
            klass_info = compiler.klass_info
            select_fields = klass_info["select_fields"]
            self.model = klass_info["model"]
            self.start, self.end = select_fields[0], select_fields[-1] + 1
            self.init_list = [f[0].target.attname for f in compiler.select[self.start : self.end]]
            self.annotations = compiler.annotation_col_map
        else:
            query = queryset.query
            self.names = [*query.extra_select, *query.values_select, *query.annotation_select]

    def _params(self, values: dict[str, Any]) -> list:
        params = list(self.params)
        for name, positions in self.slots.items():
            for i in positions:
                params[i] = values[name]
        return params

    def run_writing(self, using: str, values: dict[str, Any], write: Callable[[dict[str, str]], tuple[str, list]]):
        """The rows, read by one statement that also runs ``write``'s step over them (see
        ``Prepared.objects_writing``)."""
        if self.iterable is not ModelIterable:
            raise ValueError("objects_writing reads model instances")
        names = [f"c{i}" for i in range(self.compiler.col_count)]
        columns = {attname: names[self.start + i] for i, attname in enumerate(self.init_list)}
        write_sql, write_params = write(columns)
        sql = f"WITH live({', '.join(names)}) AS ({self.sql}), written AS ({write_sql}) SELECT * FROM live"  # noqa: S608 (compiled text, values bound)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, [*self._params(values), *write_params])
            fetched = cursor.fetchall()
        return self._objects(self._converted(fetched), using)

    def run(self, using: str, values: dict[str, Any], limit: int | None, offset: int) -> list:
        params = self._params(values)
        sql = self.sql
        if limit is not None:
            sql += " LIMIT %s OFFSET %s"
            params += [limit, offset]
        elif offset:
            sql += " OFFSET %s"
            params.append(offset)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        rows = self._converted(fetched)
        if self.iterable is ModelIterable:
            return self._objects(rows, using)
        if self.iterable is ValuesIterable:
            return [dict(zip(self.names, row, strict=True)) for row in rows]
        if self.iterable is FlatValuesListIterable:
            return [row[0] for row in rows]
        return [tuple(row) for row in rows]

    def _converted(self, fetched: list):
        """``fetched`` as ``compiler.results_iter`` gives it, with the converters found once."""
        compiler = self.compiler
        rows = compiler.apply_converters(fetched, self.converters) if self.converters else fetched
        if self.composite:  # a CompositePrimaryKey among the columns
            rows = compiler.composite_fields_to_tuples(rows, [s[0] for s in compiler.select[0 : compiler.col_count]])
        return rows

    def _objects(self, rows, using: str) -> list:
        compiler, model, start, end = self.compiler, self.model, self.start, self.end
        populators = get_related_populators(compiler.klass_info, compiler.select, using)
        found = []
        for row in rows:
            obj = model.from_db(using, self.init_list, row[start:end])  # type: ignore[union-attr]
            for populator in populators:
                populator.populate(row, obj)
            for attr_name, col_pos in (self.annotations or {}).items():
                setattr(obj, attr_name, row[col_pos])
            found.append(obj)
        return found


class Prepared:
    """``build(**values)`` returns a queryset; ``samples`` are one value per name for the
    compile (see the module's docstring)."""

    def __init__(self, build: Callable[..., QuerySet], **samples: Any) -> None:
        self.build = build
        self.samples = samples
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, using: str) -> _Compiled | None:
        connection = connections[using]
        if connection.vendor != "postgresql":
            return None
        key = (using, connection.settings_dict["NAME"])
        compiled = self._compiled.get(key)
        if compiled is None:
            queryset = self.build(**self.samples)
            if queryset._prefetch_related_lookups:
                raise ValueError("Prepared does not run prefetch_related lookups")
            if queryset.query.low_mark or queryset.query.high_mark is not None:
                raise ValueError("slice with objects(limit=, offset=), not in build()")
            allowed = (ModelIterable, ValuesIterable, ValuesListIterable, FlatValuesListIterable)
            if queryset._iterable_class not in allowed:
                raise ValueError(f"Prepared does not build {queryset._iterable_class.__name__}")
            compiled = self._compiled[key] = _Compiled(queryset, self.samples, using)
        return compiled

    def _check(self, values: dict[str, Any]) -> None:
        if values.keys() != self.samples.keys():
            raise TypeError(f"expected values for {sorted(self.samples)}, got {sorted(values)}")

    def _unlocked(self, using: str, values: dict[str, Any], refusal: str) -> _Compiled | None:
        """The compiled statement for a caller that cannot lock (``refusal`` if it does); None on
        other databases than PostgreSQL."""
        self._check(values)
        compiled = self._compile(using)
        if compiled is not None and compiled.locks:
            raise ValueError(refusal)
        return compiled

    def objects(self, *, using: str = "default", limit: int | None = None, offset: int = 0, **values: Any) -> list:
        """The rows for ``values``, as a list (instances, dicts or tuples, as the queryset)."""
        self._check(values)
        compiled = self._compile(using)
        if compiled is None:
            queryset = self.build(**values).using(using)
            if limit is not None:
                return list(queryset[offset : offset + limit])
            return list(islice(queryset, offset, None))
        if (limit is not None or offset) and compiled.locks:
            raise ValueError("a locking query cannot be paged")
        return compiled.run(using, values, limit, offset)

    def objects_writing(
        self, write: Callable[[dict[str, str]], tuple[str, list]], *, using: str = "default", **values: Any
    ) -> list | None:
        """The rows for ``values`` (model instances), read by one statement that also writes
        over them: ``write(columns)`` returns (SQL, params) of a data-modifying step (an
        ``INSERT … SELECT … FROM live``) where ``live`` is this query's result, its columns
        renamed; ``columns`` maps the model's attnames to those names. Both parts see the same
        snapshot, so the step writes for exactly the rows returned. None on other databases
        than PostgreSQL: the caller reads and writes as two statements there."""
        compiled = self._unlocked(using, values, "objects_writing does not lock")
        return None if compiled is None else compiled.run_writing(using, values, write)

    def sql(self, *, using: str = "default", **values: Any) -> tuple[str, list] | None:
        """The compiled statement's text and its parameters for ``values``, for a caller that
        embeds it in a statement of its own (a subquery: ``... WHERE id IN (<this>)``), where
        ``queryset.query.sql_with_params()`` would compile it again. None on other databases
        than PostgreSQL: the caller builds the queryset there."""
        compiled = self._unlocked(using, values, "a locking query cannot be embedded")
        return None if compiled is None else (compiled.sql, compiled._params(values))

    def first(self, *, using: str = "default", **values: Any) -> Any:
        """The first row for ``values`` or None (the queryset orders it, as the caller built it;
        a locking query is read whole: it cannot take a LIMIT after its lock clause)."""
        compiled = self._compile(using)
        found = self.objects(using=using, limit=None if compiled and compiled.locks else 1, **values)
        return found[0] if found else None


class Paged:
    """The rows of ``rows`` for ``values`` as a ``Paginator``'s object list: its ``count()`` is
    ``count``'s single number (a Prepared of one value, none counting as 0), and a page is one
    run of ``rows`` with LIMIT and OFFSET: both compiled once per process."""

    def __init__(self, rows: Prepared, count: Prepared, *, using: str = "default", **values: Any) -> None:
        self.rows, self.counted, self.using, self.values = rows, count, using, values

    def count(self) -> int:
        return self.counted.first(using=self.using, **self.values) or 0

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list:
        if not isinstance(index, slice) or index.step is not None:
            raise TypeError("Paged takes slices without a step")
        start = index.start or 0
        if index.stop is None:
            return self.rows.objects(using=self.using, offset=start, **self.values)
        return self.rows.objects(using=self.using, limit=max(index.stop - start, 0), offset=start, **self.values)
