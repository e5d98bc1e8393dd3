"""Orders' pages, one module per topic: ``orders`` (checkout, the buyer's orders, the profile),
``storefront`` (an agent's public shop at /s/<slug>/; the agent manages it in
``agents.views.storefront_manage``) and ``agent_sales`` (the agent centre's pages that read
sales). Their URLs are in ``orders.urls``."""
