"""The agent's dashboard at /agent/: each area's routes live with the code that owns them."""

from django.urls import include, path

from . import views

app_name = "agents"
urlpatterns = [
    path("", views.home, name="home"),
    path("pricing/", views.pricing, name="pricing"),
    path("pricing/markups/", views.markups, name="markups"),
    path("downline/", views.downline, name="downline"),
    path("downline/<int:pk>/", views.downline_detail, name="downline_detail"),
    path("invitations/", views.invitations, name="invitations"),
    path("invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("join/", views.join_code, name="join_code"),
    path("join/<str:code>/", views.join, name="join"),
    path("reports/", views.reports_view, name="reports"),
    path("reports/export.csv", views.reports_csv, name="reports_csv"),
    path("storefront/", include("agents.urls_storefront_manage")),
    path("api-keys/", include("agents.urls_api_keys")),
    path("withdrawals/", include("agents.urls_withdrawals")),
]
