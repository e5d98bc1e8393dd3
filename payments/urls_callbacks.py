from django.urls import path

from . import views

urlpatterns = [
    path("notify/<slug:gateway>/", views.notify, name="payments-notify"),
]
