from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("<str:number>/", views.choose, name="choose"),
    path("<str:number>/start/<slug:gateway>/", views.start, name="start"),
    path("<str:number>/balance/", views.pay_with_balance, name="balance"),
    path("<str:number>/status/", views.payable_status, name="status"),
    path("sandbox/<str:number>/", views.sandbox_cashier, name="sandbox"),
]
