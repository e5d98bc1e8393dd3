"""Agents' writes, one module per topic: ``agents`` (the tree, invitations, level prices and
markups), ``commissions``, ``withdrawals``, ``storefronts`` and ``api_keys``."""
