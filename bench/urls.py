"""The product's URLs plus the benchmark's baseline view."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("bench/product/<slug:slug>/", views.product_price, name="bench-product"),
    path("", include("marketplace.urls")),
]
