"""The agents' integration API, under /api/. Versioned: v1 lives at /api/v1/."""

from django.urls import path, re_path

from . import views

app_name = "api"
urlpatterns = [
    path("v1/products/", views.ProductList.as_view(), name="products"),
    path("v1/products/<int:product_id>/", views.ProductDetail.as_view(), name="product"),
    path("v1/orders/", views.OrderCreate.as_view(), name="orders"),
    path("v1/orders/by-number/<str:number>/", views.OrderDetailByNumber.as_view(), name="order_by_number"),
    path("v1/orders/<str:agent_order_no>/", views.OrderDetail.as_view(), name="order"),
    path("v1/balance/", views.BalanceView.as_view(), name="balance"),
    path("v1/schema/", views.SchemaView.as_view(), name="schema"),
    path("v1/docs/", views.docs, name="docs"),
    # Anything else under /api/ is the API's JSON 404, not the site's HTML page.
    re_path(r"^(?P<path>.*)$", views.not_found, name="not_found"),
]
