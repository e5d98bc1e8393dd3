"""/agent/api-keys/: the agent's keys for the integration API (included by agents.urls)."""

from django.urls import path

from . import views_api_keys as views

urlpatterns = [
    path("", views.api_keys_home, name="api_keys"),
    path("<int:key_id>/edit/", views.api_key_edit, name="api_key_edit"),
    path("<int:key_id>/rotate/", views.api_key_rotate, name="api_key_rotate"),
    path("<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
