"""Agents' storefronts for end buyers: /s/<slug>/ (included at "s/" by marketplace/urls.py)."""

from django.urls import path

from . import views_storefront as views

app_name = "storefront"
urlpatterns = [
    path("<slug:slug>/", views.home, name="home"),
    path("<slug:slug>/logo.png", views.logo, name="logo"),
    path("<slug:slug>/p/<slug:product_slug>/", views.product, name="product"),
    path("<slug:slug>/p/<slug:product_slug>/buy/", views.buy, name="buy"),
]
