import secrets
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import AgentLevel, OperatorIdentity, Storefront
from catalog import services as stock_services
from catalog.models import Category, Product, Supplier
from compliance.identity import id_check_char
from marketplace import crypto


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class AgentLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentLevel

    name = factory.Sequence(lambda n: f"Level {n}")
    rank = factory.Sequence(lambda n: 100 + n)  # unique; clear of the ranks 1-4 tests give by hand


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class SupplierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Supplier

    name = factory.Sequence(lambda n: f"Supplier {n}")
    is_authorised = True
    authorisation_cert_no = factory.Sequence(lambda n: f"CERT-{n:05d}")
    authorisation_lookup_url = "https://example.com/verify"


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    category = factory.SubFactory(CategoryFactory)
    supplier = factory.SubFactory(SupplierFactory)
    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    kind = Product.Kind.GAME_CARD
    face_value = Decimal("100.00")
    price = Decimal("97.00")
    min_per_order = 1
    max_per_order = 10


def add_stock(product: Product, count: int, *, user=None, numbered: bool = False) -> list[str]:
    """Import ``count`` fresh codes through the real import service; returns the secrets."""
    secrets_list = [secrets.token_hex(8).upper() for _ in range(count)]
    lines = [f"{i:010d}----{s}" if numbered else s for i, s in enumerate(secrets_list)]
    user = user or UserFactory(is_staff=True, is_superuser=True)
    batch = stock_services.batch_create(
        request=stock_services.ImportRequest(
            product=product,
            supplier=product.supplier,
            cost_price=Decimal("90.00"),
            text="\n".join(lines),
            source_name="test",
            csv_format=False,
        ),
        user=user,
        run_now=True,
    )
    assert batch.status == batch.Status.DONE, batch.error
    return secrets_list


def id_number_for(serial: int, *, born: str = "19900307", region: str = "110101") -> str:
    """A well-formed resident identity number (GB 11643-1999 check character) for tests."""
    first17 = f"{region}{born}{serial % 1000:03d}"
    return first17 + id_check_char(first17)


class OperatorIdentityFactory(factory.django.DjangoModelFactory):
    """A storefront operator's identity, verified (an individual unless told otherwise): what a
    storefront needs to open and answer buyers (agents.services.operators)."""

    class Meta:
        model = OperatorIdentity

    kind = OperatorIdentity.Kind.INDIVIDUAL
    legal_name = "张三"
    id_number = factory.Sequence(lambda n: crypto.encrypt(id_number_for(n)))
    id_number_digest = factory.LazyAttribute(lambda o: crypto.keyed_digest(crypto.decrypt(o.id_number)))
    address = "北京市东城区东长安街 1 号"
    phone = "13800138000"
    small_sales_declared = True
    status = OperatorIdentity.Status.VERIFIED
    submitted_at = factory.LazyFunction(timezone.now)
    verified_at = factory.LazyFunction(timezone.now)


def verified_operator(agent) -> OperatorIdentity:
    """``agent``'s verified operator identity (created if it has none)."""
    existing = OperatorIdentity.objects.filter(agent=agent).first()
    return existing or OperatorIdentityFactory(agent=agent)


def storefront_create(*, agent, **fields) -> Storefront:
    """A storefront row as tests make them, its operator verified so that it answers buyers."""
    verified_operator(agent)
    return Storefront.objects.create(agent=agent, **fields)
