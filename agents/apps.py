from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = _("Agents")

    def ready(self):
        from . import receivers  # noqa: F401  (User.is_agent kept with the agent profiles)
