"""Payments' writes, one module per topic: ``payments`` (the one notification pipeline, balance
payments, recharges, starting a payment), ``refunds``, ``payouts`` and ``reconciliation``.
They import one way (reconciliation > payments > refunds; pyproject's import-linter contracts)."""
