"""Orders' URLs, three lists for three places (``marketplace/urls.py`` mounts them).

``urlpatterns``: the buyer's orders at /orders/ (namespace ``orders``).
``storefront_urlpatterns``: agents' public shops at /s/<slug>/ (namespace ``storefront``).
``agent_urlpatterns``: the agent centre's pages that read sales, at /agent/, joined with
``agents.urls`` (the agent centre's own pages) into the ``agents`` namespace.
``catalog_urlpatterns``: the platform's catalogue at / (namespace ``catalog``: catalog:home ...).
They live in orders because they show each viewer's price (``orders.selectors.orders.purchase_infos``).
"""

from django.urls import path

from .views import agent_sales, catalog, guest, guest_lookup, orders, restock, share, storefront, supply

app_name = "orders"
urlpatterns = [
    path("", orders.order_list, name="list"),
    path("checkout/<slug:slug>/", orders.checkout, name="checkout"),
    # A guest's order (no account): the emailed signed link, then the page this browser may see.
    path("g/<str:token>/", guest.link, name="guest_link"),
    # Finding guest orders again: by number or email with the query password, or a one-time
    # emailed link; and this browser's recent guest orders.
    path("lookup/", guest_lookup.lookup, name="guest_lookup"),
    path("lookup/link/<str:token>/", guest_lookup.link, name="guest_lookup_link"),
    path("lookup/forget/", guest_lookup.forget, name="guest_lookup_forget"),
    path("guest/<str:number>/", guest.detail, name="guest_detail"),
    path("guest/<str:number>/status/", guest.status, name="guest_status"),
    path("guest/<str:number>/unlock/", guest.unlock, name="guest_unlock"),
    path("guest/<str:number>/password/", guest.password_set, name="guest_password_set"),
    path("guest/<str:number>/code/send/", guest.code_send, name="guest_code_send"),
    path("guest/<str:number>/code/check/", guest.code_check, name="guest_code_check"),
    path("guest/<str:number>/cancel/", guest.cancel, name="guest_cancel"),
    path("guest/<str:number>/codes/<int:code_id>/reveal/", guest.code_reveal, name="guest_reveal"),
    path("<str:number>/", orders.order_detail, name="detail"),
    path("<str:number>/status/", orders.order_status, name="status"),
    path("<str:number>/cancel/", orders.order_cancel, name="cancel"),
    path("<str:number>/codes/<int:code_id>/reveal/", orders.code_reveal, name="reveal"),
]

storefront_urlpatterns = [
    path("<slug:slug>/", storefront.home, name="home"),
    path("<slug:slug>/logo.png", storefront.logo, name="logo"),
    path("<slug:slug>/operator/", storefront.operator, name="operator"),
    path("<slug:slug>/operator/licence.jpg", storefront.operator_licence, name="operator_licence"),
    path("<slug:slug>/p/<slug:product_slug>/", storefront.product, name="product"),
    path("<slug:slug>/p/<slug:product_slug>/buy/", storefront.buy, name="buy"),
    path("<slug:slug>/p/<slug:product_slug>/notify/", restock.storefront_subscribe, name="restock_subscribe"),
]

agent_urlpatterns = [
    path("", agent_sales.home, name="home"),
    path("downline/", agent_sales.downline, name="downline"),
    path("downline/<int:pk>/", agent_sales.downline_detail, name="downline_detail"),
    path("reports/", agent_sales.reports_view, name="reports"),
    path("reports/export.csv", agent_sales.reports_csv, name="reports_csv"),
    path("reports/sources/", agent_sales.reports_sources, name="reports_sources"),
    # The share tools (推广海报): the storefront's and its products' posters.
    path("storefront/posters/", share.posters, name="posters"),
    path("storefront/posters/shop.<str:kind>", share.poster, name="poster_shop"),
    path("storefront/posters/p/<int:product_id>.<str:kind>", share.poster, name="poster_product"),
    path("api-keys/callbacks/<int:callback_id>/resend/", agent_sales.api_callback_resend, name="api_callback_resend"),
]

catalog_urlpatterns = [
    path("", catalog.home, name="home"),
    path("search/", catalog.search, name="search"),
    path("c/<slug:slug>/", catalog.category, name="category"),
    path("p/<slug:slug>/", catalog.product, name="product"),
    # Restock alerts (到货通知): ask on a sold-out product; a guest's confirmation link; unsubscribe.
    path("p/<slug:slug>/notify/", restock.subscribe, name="restock_subscribe"),
    path("restock/confirm/<str:token>/", restock.confirm, name="restock_confirm"),
    path("restock/unsubscribe/<str:token>/", restock.unsubscribe, name="restock_unsubscribe"),
]

# Suppliers' callbacks (issue 16) at /supply/ (namespace ``supply``): signed, no session, no CSRF.
supply_urlpatterns = [path("callback/<int:connection_id>/", supply.callback, name="callback")]
