"""The agent's dashboard at /agent/: the agent centre's own pages.

The pages that read sales (overview, downline, reports) are ``orders.urls.agent_urlpatterns``;
``marketplace/urls.py`` mounts both lists under one ``agents`` namespace."""

from django.urls import path

from .views import api_keys, dashboard, operators, storefront_manage, withdrawals

app_name = "agents"
urlpatterns = [
    path("pricing/", dashboard.pricing, name="pricing"),
    path("pricing/markups/", dashboard.markups, name="markups"),
    path("invitations/", dashboard.invitations, name="invitations"),
    path("invitations/<int:pk>/revoke/", dashboard.invitation_revoke, name="invitation_revoke"),
    path("join/", dashboard.join_code, name="join_code"),
    path("join/<str:code>/", dashboard.join, name="join"),
    # The agent's storefront settings and retail prices.
    path("storefront/", storefront_manage.storefront, name="storefront"),
    path("storefront/logo/", storefront_manage.storefront_logo, name="storefront_logo"),
    # Who runs the storefront (网络交易监督管理办法 第二十四条): submitted here, verified by staff.
    path("storefront/operator/", operators.operator_identity, name="operator_identity"),
    path("storefront/prices/", storefront_manage.storefront_prices, name="storefront_prices"),
    path("storefront/prices/<int:product_id>/", storefront_manage.storefront_price, name="storefront_price"),
    # The agent's keys for the integration API.
    path("api-keys/", api_keys.api_keys_home, name="api_keys"),
    path("api-keys/<int:key_id>/edit/", api_keys.api_key_edit, name="api_key_edit"),
    path("api-keys/<int:key_id>/rotate/", api_keys.api_key_rotate, name="api_key_rotate"),
    path("api-keys/<int:key_id>/revoke/", api_keys.api_key_revoke, name="api_key_revoke"),
    path("withdrawals/", withdrawals.withdrawal_list, name="withdrawals"),
    path("withdrawals/fee/", withdrawals.withdrawal_fee, name="withdrawal_fee"),
    path("withdrawals/<str:number>/", withdrawals.withdrawal_detail, name="withdrawal_detail"),
]
