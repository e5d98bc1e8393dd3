from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OpsConfig(AppConfig):
    """Running the platform (issue 17): the health endpoint, heartbeats, Prometheus metrics."""

    name = "ops"
    verbose_name = _("Operations")
