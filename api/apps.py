from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = _("Agent API")

    def ready(self):
        from . import schema  # noqa: F401  (registers the signature's OpenAPI description)
