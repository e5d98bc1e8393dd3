"""The agent's storefront settings and retail prices, under /agent/storefront/ (no app_name:
included by agents/urls.py)."""

from django.urls import path

from . import views_storefront as views

urlpatterns = [
    path("", views.storefront, name="storefront"),
    path("logo/", views.storefront_logo, name="storefront_logo"),
    path("prices/", views.storefront_prices, name="storefront_prices"),
    path("prices/<int:product_id>/", views.storefront_price, name="storefront_price"),
]
