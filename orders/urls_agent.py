"""The agent centre's sales pages, under /agent/ and the ``agents`` namespace.

Not included on their own: ``marketplace/urls.py`` joins them with ``agents.urls`` (the agent
centre's other pages) into one namespace, so the URLs and their names are as before.
"""

from django.urls import path

from . import views_agent as views

urlpatterns = [
    path("", views.home, name="home"),
    path("downline/", views.downline, name="downline"),
    path("downline/<int:pk>/", views.downline_detail, name="downline_detail"),
    path("reports/", views.reports_view, name="reports"),
    path("reports/export.csv", views.reports_csv, name="reports_csv"),
    path("api-keys/callbacks/<int:callback_id>/resend/", views.api_callback_resend, name="api_callback_resend"),
]
