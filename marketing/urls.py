"""The agent centre's coupon pages, mounted under /agent/ in the agents' namespace."""

from django.urls import path

from . import views

agent_urlpatterns = [
    path("storefront/coupons/", views.coupon_list, name="coupons"),
    path("storefront/coupons/<int:pk>/", views.coupon_detail, name="coupon_detail"),
    path("storefront/coupons/<int:pk>/generate/", views.coupon_generate, name="coupon_generate"),
    path("storefront/coupons/<int:pk>/codes.csv", views.coupon_codes_csv, name="coupon_codes_csv"),
    path("storefront/coupons/<int:pk>/active/", views.coupon_pause, name="coupon_pause"),
]
