"""The product's URLs plus the benchmark's baseline view and bench/skeleton.py's views."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("bench/product/<slug:slug>/", views.product_price, name="bench-product"),
    path("bench/skeleton/place/<slug:slug>/", views.skeleton_place),
    path("bench/skeleton/notify/", views.skeleton_notify),
    path("bench/skeleton/notify-inline/", views.skeleton_notify, {"inline": True}),
    path("bench/skeleton/balance/", views.skeleton_balance),
    path("", include("marketplace.urls")),
]
