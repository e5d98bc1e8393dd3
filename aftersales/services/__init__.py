"""After-sales writes, one module per topic: ``tickets`` (the ticket machine), ``sla`` (its clocks),
``no_reason`` (7-day no-reason refunds), ``disputes``, ``arbitration``, and ``promises`` (the
protections pages state, read from the configuration the clocks enforce)."""
