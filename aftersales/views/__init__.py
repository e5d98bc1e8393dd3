"""The buyer's after-sales pages, one module per topic: ``tickets``, ``refunds`` (no-reason
refunds), ``arbitration``. Their URLs are in ``aftersales.urls``."""
