"""Supplier adapters: one interface (base.SupplierAdapter), one class per kind of connection."""

from ..models import SupplierConnection
from .base import SupplierAdapter
from .generic import GenericHttpAdapter
from .kamarket import KamarketAdapter

ADAPTERS: dict[str, type[GenericHttpAdapter] | type[KamarketAdapter]] = {
    SupplierConnection.Kind.GENERIC_HTTP: GenericHttpAdapter,
    SupplierConnection.Kind.KAMARKET: KamarketAdapter,
}


def adapter_for(connection: SupplierConnection, secret: str) -> SupplierAdapter:
    return ADAPTERS[connection.kind](connection, secret)
