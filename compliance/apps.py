from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = _("Compliance")

    def ready(self):
        from . import checks, receivers  # noqa: F401  (system checks; the audit of staff sign-ins and two-factor changes)
