from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class AftersalesConfig(AppConfig):
    name = "aftersales"
    verbose_name = _("After-sales")

    def ready(self):
        from .models import SlaPolicy
        from .services import promises

        post_save.connect(promises.forget, sender=SlaPolicy, dispatch_uid="aftersales.promises.save")
        post_delete.connect(promises.forget, sender=SlaPolicy, dispatch_uid="aftersales.promises.delete")
