"""marketplace.prepared: a queryset compiled once per process gives what the ORM gives."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Count, F
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from catalog.models import Product
from marketplace.prepared import Prepared
from tests.factories import CategoryFactory, ProductFactory, add_stock

pytestmark = pytest.mark.django_db


def _products(category):
    return Product.objects.filter(category_id=category).select_related("category", "supplier").order_by("price", "pk")


def _fields(product: Product) -> tuple:
    return (product.pk, product.name, product.slug, product.price, product.category.name, product.supplier.name)


@pytest.fixture
def shelf():
    category = CategoryFactory()
    products = [ProductFactory(category=category, price=Decimal(f"{10 + i}.50")) for i in range(5)]
    ProductFactory(price=Decimal("1.00"))  # another category: never among the results
    return category, products


def test_instances_with_related_objects_equal_the_orms(shelf):
    category, _ = shelf
    prepared = Prepared(_products, category=987654321)
    got = prepared.objects(category=category.pk)
    assert [_fields(p) for p in got] == [_fields(p) for p in _products(category.pk)]
    assert all(isinstance(p.price, Decimal) for p in got)
    assert got[0]._state.adding is False and got[0]._state.db == "default"
    got[0].name = "renamed"
    got[0].save(update_fields=["name"])  # a usable instance
    assert Product.objects.get(pk=got[0].pk).name == "renamed"


@pytest.mark.postgres
def test_compiled_once_then_one_statement_per_call(shelf, monkeypatch):
    category, products = shelf
    prepared = Prepared(_products, category=987654321)
    prepared.objects(category=category.pk)
    compiles = []
    original = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiles.append(1) or original(self, *a, **k))
    with CaptureQueriesContext(connection) as queries:
        again = prepared.objects(category=category.pk)
        other = prepared.objects(category=products[0].supplier.pk + 10**6)
    assert compiles == [] and len(queries) == 2
    assert len(again) == 5 and other == []


def test_pages_with_parameters_equal_slices(shelf):
    category, _ = shelf
    prepared = Prepared(_products, category=987654321)
    whole = list(_products(category.pk))
    assert [p.pk for p in prepared.objects(category=category.pk, limit=2)] == [p.pk for p in whole[:2]]
    assert [p.pk for p in prepared.objects(category=category.pk, limit=2, offset=2)] == [p.pk for p in whole[2:4]]
    assert [p.pk for p in prepared.objects(category=category.pk, offset=3)] == [p.pk for p in whole[3:]]
    assert prepared.first(category=category.pk).pk == whole[0].pk
    assert prepared.first(category=-5) is None


def test_annotations_values_and_flat_lists(shelf):
    category, products = shelf
    add_stock(products[0], 3)
    counted = Prepared(
        lambda category: (
            Product.objects.filter(category_id=category)
            .annotate(code_count=Count("codes"), twice=F("price") * 2)
            .order_by("pk")
        ),
        category=987654321,
    )
    got = counted.objects(category=category.pk)
    assert [(p.pk, p.code_count, p.twice) for p in got] == [
        (p.pk, 3 if p.pk == products[0].pk else 0, p.price * 2) for p in got
    ]
    dicts = Prepared(lambda slug: Product.objects.filter(slug=slug).values("pk", "name"), slug="sample-slug-x")
    assert dicts.objects(slug=products[1].slug) == [{"pk": products[1].pk, "name": products[1].name}]
    flat = Prepared(
        lambda category: Product.objects.filter(category_id=category).order_by("pk").values_list("slug", flat=True),
        category=987654321,
    )
    assert flat.objects(category=category.pk) == [p.slug for p in sorted(products, key=lambda p: p.pk)]
    pairs = Prepared(
        lambda category: Product.objects.filter(category_id=category).order_by("pk").values_list("pk", "price"),
        category=987654321,
    )
    assert pairs.objects(category=category.pk)[0] == (products[0].pk, products[0].price)


@pytest.mark.postgres
def test_a_locking_read_locks_and_is_not_paged(shelf):
    _, products = shelf
    locked = Prepared(lambda pk: Product.objects.select_for_update().filter(pk=pk), pk=987654321)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert locked.first(pk=products[2].pk).pk == products[2].pk
    assert any(q["sql"].rstrip().endswith("FOR UPDATE") for q in queries)
    with transaction.atomic(), pytest.raises(ValueError, match="locking"):
        locked.objects(pk=products[2].pk, limit=1)


@pytest.mark.postgres
def test_bad_samples_and_values_are_refused(shelf):
    del shelf  # products exist; the refusals come before any read
    contains = Prepared(lambda name: Product.objects.filter(name__contains=name), name="sample-name")
    with pytest.raises(ValueError, match="does not occur"):  # the parameter is '%sample-name%'
        contains.objects(name="Product")
    twins = Prepared(lambda a, b: Product.objects.filter(category_id=a, supplier_id=b), a=7, b=7)
    with pytest.raises(ValueError, match="share a value"):
        twins.objects(a=1, b=2)
    with pytest.raises(TypeError, match="expected values"):
        Prepared(_products, category=987654321).objects(categories=1)
    with pytest.raises(ValueError, match="prefetch_related"):
        Prepared(lambda category: _products(category).prefetch_related("codes"), category=987654321).objects(category=1)
    with pytest.raises(ValueError, match="slice"):
        Prepared(lambda category: _products(category)[:3], category=987654321).objects(category=1)


def test_other_databases_evaluate_the_queryset_each_time(shelf, monkeypatch):
    category, _ = shelf
    prepared = Prepared(_products, category=987654321)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # the development default's path
    compiles = []
    original = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiles.append(1) or original(self, *a, **k))
    whole = [p.pk for p in _products(category.pk)]
    compiles.clear()
    assert [p.pk for p in prepared.objects(category=category.pk, limit=2, offset=1)] == whole[1:3]
    assert [p.pk for p in prepared.objects(category=category.pk, offset=4)] == whole[4:]
    assert prepared.first(category=category.pk).pk == whole[0]
    assert len(compiles) == 3 and prepared._compiled == {}


@pytest.mark.postgres
def test_objects_writing_reads_and_writes_over_the_same_rows_in_one_statement(shelf):
    category, _ = shelf
    prepared = Prepared(_products, category=987654321)
    orm = [_fields(p) for p in _products(category.pk)]

    def write(columns):
        return f"UPDATE catalog_product SET name = name || %s WHERE id IN (SELECT {columns['id']} FROM live)", ["!"]

    with CaptureQueriesContext(connection) as queries:
        got = prepared.objects_writing(write, category=category.pk)
    assert len(queries) == 1
    assert [_fields(p) for p in got] == orm  # the rows as read (the write's snapshot is the same)
    assert all(p.name.endswith("!") for p in Product.objects.filter(category=category))
    assert not Product.objects.exclude(category=category).filter(name__endswith="!").exists()
    assert prepared.objects_writing(write, category=category.pk + 10**6) == []  # no rows: nothing written
    assert not Product.objects.filter(name__endswith="!!").exists()
    with pytest.raises(ValueError):
        Prepared(lambda category: _products(category).values("pk"), category=987654321).objects_writing(
            write, category=category.pk
        )


def test_objects_writing_leaves_other_databases_to_the_caller(shelf, monkeypatch):
    category, _ = shelf
    monkeypatch.setattr(connection, "vendor", "sqlite")
    assert Prepared(_products, category=987654321).objects_writing(lambda c: ("", []), category=category.pk) is None


@pytest.mark.postgres
def test_sql_is_the_compiled_text_with_the_values_for_a_subquery(shelf, monkeypatch):
    category, products = shelf
    ids = Prepared(lambda category: Product.objects.filter(category_id=category).values("id"), category=987654321)
    sql, params = ids.sql(category=category.pk)
    assert params == [category.pk]
    with connection.cursor() as cursor:  # embedded in a statement of the caller's
        cursor.execute(f"SELECT name FROM catalog_product WHERE id IN ({sql}) ORDER BY id", params)
        assert [row[0] for row in cursor.fetchall()] == [p.name for p in sorted(products, key=lambda p: p.pk)]
    compiles = []
    original = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiles.append(1) or original(self, *a, **k))
    assert ids.sql(category=category.pk + 1) == (sql, [category.pk + 1])  # the same text, not compiled again
    assert compiles == []
    with pytest.raises(TypeError, match="expected values"):
        ids.sql(categories=1)
    locked = Prepared(lambda pk: Product.objects.select_for_update().filter(pk=pk).values("id"), pk=987654321)
    with transaction.atomic(), pytest.raises(ValueError, match="locking"):
        locked.sql(pk=1)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # other databases: the caller builds the queryset
    assert Prepared(_products, category=987654321).sql(category=category.pk) is None
