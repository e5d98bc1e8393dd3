from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LegalConfig(AppConfig):
    name = "legal"
    verbose_name = _("Agreements")

    def ready(self):
        from . import retention

        retention.connect()  # transaction records are never deleted (电子商务法 第三十一条)
