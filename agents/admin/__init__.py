"""Agents in admin, one module per topic. Django's admin autodiscovery imports this package;
importing each module registers its ModelAdmins (withdrawals are paid out in payments.admin)."""

from . import agents, api_keys, operators, storefronts  # noqa: F401
