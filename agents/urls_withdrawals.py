"""/agent/withdrawals/: included by agents/urls.py (app "agents")."""

from django.urls import path

from . import views_withdrawals as views

urlpatterns = [
    path("", views.withdrawal_list, name="withdrawals"),
    path("fee/", views.withdrawal_fee, name="withdrawal_fee"),
    path("<str:number>/", views.withdrawal_detail, name="withdrawal_detail"),
]
