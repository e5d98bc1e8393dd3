"""The agent's dashboard at /agent/: each area's routes live with the code that owns them.

The pages that read sales (overview, downline, reports) are in ``orders.urls_agent``;
``marketplace/urls.py`` mounts both lists under one ``agents`` namespace."""

from django.urls import include, path

from . import views

app_name = "agents"
urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("pricing/markups/", views.markups, name="markups"),
    path("invitations/", views.invitations, name="invitations"),
    path("invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("join/", views.join_code, name="join_code"),
    path("join/<str:code>/", views.join, name="join"),
    path("storefront/", include("agents.urls_storefront_manage")),
    path("api-keys/", include("agents.urls_api_keys")),
    path("withdrawals/", include("agents.urls_withdrawals")),
]
