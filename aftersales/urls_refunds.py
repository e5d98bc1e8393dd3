"""The 7-day no-reason refund pages, included at "refunds/" by aftersales/urls.py (no app_name here)."""

from django.urls import path

from . import views_refunds

urlpatterns = [
    path("order/<str:number>/", views_refunds.refund_new, name="refund_new"),
    path("<uuid:public_id>/", views_refunds.refund_detail, name="refund_detail"),
]
