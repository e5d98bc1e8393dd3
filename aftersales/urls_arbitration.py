"""The buyer's arbitration page of a ticket, included at "<number>/arbitration/" (no app_name here)."""

from django.urls import path

from . import views_arbitration

urlpatterns = [
    path("", views_arbitration.arbitration_detail, name="arbitration"),
    # The same page under the name the dispute rejection's message links to.
    path("", views_arbitration.arbitration_detail, name="arbitration_new"),
]
