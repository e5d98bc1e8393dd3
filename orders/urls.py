from django.urls import path

from . import views

app_name = "orders"
urlpatterns = [
    path("", views.order_list, name="list"),
    path("checkout/<slug:slug>/", views.checkout, name="checkout"),
    path("<str:number>/", views.order_detail, name="detail"),
    path("<str:number>/status/", views.order_status, name="status"),
    path("<str:number>/cancel/", views.order_cancel, name="cancel"),
    path("<str:number>/codes/<int:code_id>/reveal/", views.code_reveal, name="reveal"),
]
