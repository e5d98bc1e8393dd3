"""After-sales in admin, one module per topic. Django's admin autodiscovery imports this package;
importing each module registers its ModelAdmins."""

from . import accounts, arbitration, refunds, sla, tickets  # noqa: F401
