"""The buyer's compliance pages under /accounts/ (no namespace: ``realname``)."""

from django.urls import path

from . import views

urlpatterns = [path("", views.realname, name="realname")]
