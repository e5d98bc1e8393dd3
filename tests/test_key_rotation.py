"""Every secret kept with CARD_CODE_KEYS is rotated and checked (marketplace/crypto.py).

The README's procedure: put a new key in front, `manage.py rotate_card_keys`, `manage.py
keys_check --primary-only`, drop the old key. Before, the command re-encrypted only card codes
and two-factor secrets: after dropping the old key, every agent's API secret, payout account,
storefront operator's and real-name ID number, supplier credential and queued stock upload was
unreadable (agents' API calls all refused, payouts and regulator reports impossible). Here a row
of every kind is written under the old key, rotated, and read back through the services that use
it with the new key alone. And a column that holds tokens without being declared fails the scan.
"""

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from allauth.mfa.adapter import get_adapter as get_mfa_adapter
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import models
from django.db.models.functions import Cast
from django.utils import timezone

from agents.models import Withdrawal
from agents.selectors import id_number_of
from agents.services import api_keys, withdrawals
from catalog import services as catalog_services
from catalog.models import CardCode, StockBatch
from compliance import realname
from compliance.identity import id_check_char
from compliance.realname import Subject
from marketplace import crypto
from supply import services as supply_services
from supply.models import SupplierConnection
from tests.api_helpers import make_agent, withdrawal_with_commission
from tests.factories import OperatorIdentityFactory, ProductFactory, SupplierFactory, UserFactory, add_stock

pytestmark = pytest.mark.django_db

TOTP_SECRET = "JBSWY3DPEHPK3PXP"
FERNET_PREFIX = "gAAAAA"  # a Fernet token's version byte and the high bytes of its timestamp


def id_number(born: date) -> str:
    first17 = f"110101{born:%Y%m%d}123"
    return first17 + id_check_char(first17)


@pytest.fixture
def keys(settings):
    """Two keys; the old one alone is in use when the test starts."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CARD_CODE_KEYS = [old]
    crypto.reset_key_cache()

    def use(*which: str) -> None:
        settings.CARD_CODE_KEYS = [{"old": old, "new": new}[w] for w in which]
        crypto.reset_key_cache()

    yield use
    crypto.reset_key_cache()


@pytest.fixture
def every_kind(keys, settings):
    """A row of every kind of secret, written under the old key by the code that writes it."""
    product = ProductFactory()
    add_stock(product, 2, numbered=True)
    importer = UserFactory(is_staff=True, is_superuser=True)
    catalog_services.batch_create(  # queued (its task runs at commit, which this test never reaches)
        request=catalog_services.ImportRequest(
            product=product,
            supplier=product.supplier,
            cost_price=Decimal("1.00"),
            text="CARD-1----PIN-1",
            source_name="upload.txt",
            csv_format=False,
        ),
        user=importer,
    )
    agent = make_agent()
    key, first_secret = api_keys.apikey_create(agent=agent, name="shop")
    key, api_secret = api_keys.apikey_rotate(agent=agent, key_id=key.pk)  # the first still valid a while
    withdrawal = withdrawal_with_commission(agent)
    operator = OperatorIdentityFactory(agent=agent)
    settings.REALNAME_PROVIDER = "sandbox"
    buyer = UserFactory()
    verified = realname.realname_verify(
        subject=Subject(user=buyer), name="张三", id_number=id_number(date(1990, 5, 17))
    )
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(),
        name="upstream",
        kind=SupplierConnection.Kind.GENERIC_HTTP,
        base_url="http://127.0.0.1:9",
        app_id="app",
    )
    supply_services.connection_secret_set(connection=connection, secret="supplier-secret")
    staff = UserFactory(is_staff=True)
    TOTP.activate(staff, TOTP_SECRET)
    RecoveryCodes.activate(staff)
    return {
        "product": product,
        "key": key,
        "api_secrets": [api_secret, first_secret],
        "withdrawal": withdrawal,
        "operator": operator,
        "realname": verified,
        "connection": connection,
        "staff": staff,
    }


def read_everything(kinds) -> dict[str, object]:
    """Each secret through the code that reads it, from fresh rows."""
    key = kinds["key"]
    key.refresh_from_db()
    codes = CardCode.objects.filter(product=kinds["product"]).order_by("pk")
    staff = kinds["staff"]
    recovery = Authenticator.objects.get(user=staff, type=Authenticator.Type.RECOVERY_CODES).wrap()
    batch = StockBatch.objects.get(product=kinds["product"], payload__gt="")
    kind, _sep, text = crypto.decrypt(batch.payload).partition("\n")
    return {
        "codes": [catalog_services.code_plaintext(code) for code in codes],
        "batch": (kind, text),
        "api secrets": api_keys._valid_secrets(key, timezone.now()),  # what a signature is checked against
        "payee": withdrawals.payee_account(Withdrawal.objects.get(pk=kinds["withdrawal"].pk)),
        "operator id": id_number_of(type(kinds["operator"]).objects.get(pk=kinds["operator"].pk)),
        "real name": realname.realname_of(user=kinds["realname"].user).name,
        "supplier secret": supply_services.connection_secret(SupplierConnection.objects.get(pk=kinds["connection"].pk)),
        "totp": get_mfa_adapter().decrypt(
            Authenticator.objects.get(user=staff, type=Authenticator.Type.TOTP).data["secret"]
        ),
        "recovery codes": recovery.get_unused_codes(),
    }


def test_after_rotation_the_old_key_can_be_dropped_and_everything_still_reads(every_kind, keys):
    before = read_everything(every_kind)
    assert before["api secrets"] == every_kind["api_secrets"] and before["payee"] == "6222020200001234567"
    assert before["batch"] == ("txt", "CARD-1----PIN-1") and before["real name"] == "张三"
    assert len(before["recovery codes"]) == 10 and before["totp"] == TOTP_SECRET

    # The control: the new key alone reads none of it yet, and keys_check says so, by model.
    keys("new")
    err = StringIO()
    with pytest.raises(CommandError, match="cannot be read with the configured keys"):
        call_command("keys_check", stdout=StringIO(), stderr=err)
    for model in ("catalog.CardCode", "catalog.StockBatch", "agents.ApiKey", "agents.Withdrawal"):
        assert f"{model}: " in err.getvalue()
    for model in ("agents.OperatorIdentity", "compliance.RealNameVerification", "supply.SupplierConnection"):
        assert f"{model}: " in err.getvalue()
    assert "mfa.Authenticator: 2 secrets, 2 unreadable" in err.getvalue()
    with pytest.raises(ValueError):
        api_keys.apikey_secret(every_kind["key"])

    # Rotating without the old key would stop half-way: refused, nothing changed.
    stored = sorted(CardCode.objects.values_list("secret_enc", flat=True))
    with pytest.raises(CommandError, match=r"cannot be read with CARD_CODE_KEYS.*Nothing was changed"):
        call_command("rotate_card_keys", stdout=StringIO())
    assert sorted(CardCode.objects.values_list("secret_enc", flat=True)) == stored

    # The procedure: new key in front, rotate, check with the primary alone, drop the old key.
    keys("new", "old")
    with pytest.raises(CommandError):
        call_command("keys_check", "--primary-only", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("rotate_card_keys", stdout=out)
    assert "catalog.CardCode: 2 rows re-encrypted" in out.getvalue()
    out = StringIO()
    call_command("keys_check", "--primary-only", stdout=out)
    assert "Every secret reads with the primary key." in out.getvalue()
    assert "agents.ApiKey: 2 secrets, 0 unreadable" in out.getvalue()
    assert "mfa.Authenticator: 2 secrets, 0 unreadable" in out.getvalue()
    keys("new")
    assert read_everything(every_kind) == before
    call_command("keys_check", stdout=StringIO())


def test_every_column_that_holds_tokens_is_declared(every_kind):
    """A new encrypted column must be declared (crypto.declare_encrypted), or rotation would leave
    it under the old key. Every text and JSON column of every model is searched for tokens, with a
    row of every declared kind present (so the search can also see each declared one)."""
    holding = set()
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, (models.TextField, models.CharField, models.JSONField)):
                as_text = Cast(field.name, models.TextField())
                if model._base_manager.annotate(_t=as_text).filter(_t__contains=FERNET_PREFIX).exists():
                    holding.add((model._meta.label, field.name))
    declared = {(e.model, name) for e in crypto.declared_encrypted() for name in e.fields}
    assert holding - declared == set(), "columns holding tokens that crypto.declare_encrypted does not know"
    assert declared - holding == set(), "declared columns this test wrote no token into"


def test_rotation_works_in_chunks_and_leaves_empty_values_empty(keys):
    product = ProductFactory()
    add_stock(product, 5, numbered=True)
    CardCode.objects.filter(pk=CardCode.objects.order_by("pk").first().pk).update(card_number_enc="")
    keys("new", "old")
    assert crypto.rotate_all(chunk=2)["catalog.CardCode"] == 5
    keys("new")
    assert CardCode.objects.filter(card_number_enc="").count() == 1
    assert all(catalog_services.code_plaintext(code)[1] for code in CardCode.objects.all())
