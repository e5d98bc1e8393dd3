"""The agent centre's own pages, one module per topic: ``dashboard`` (prices, markups,
invitations), ``storefront_manage`` (the agent's storefront settings; the public shop is
``orders.views.storefront``), ``api_keys`` and ``withdrawals``. The pages that read sales are in
``orders.views.agent_sales``; all their URLs are in ``agents.urls`` and ``orders.urls``."""
