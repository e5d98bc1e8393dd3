from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("<str:number>/", views.choose, name="choose"),
    path("sandbox/<str:number>/", views.sandbox_cashier, name="sandbox"),
]
