from django.urls import path

from . import views

app_name = "trust"
urlpatterns = [
    path("", views.index, name="index"),
    path("certificates/", views.certificate_lookup, name="certificate_lookup"),
]
