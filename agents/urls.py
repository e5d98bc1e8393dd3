"""The agent's dashboard at /agent/: each area's routes live with the code that owns them."""

from django.urls import include, path

app_name = "agents"
urlpatterns = [
    path("storefront/", include("agents.urls_storefront_manage")),
    path("api-keys/", include("agents.urls_api_keys")),
    path("withdrawals/", include("agents.urls_withdrawals")),
]
