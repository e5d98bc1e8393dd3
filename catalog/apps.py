from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = _("Catalogue and stock")

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from .models import Category
        from .selectors import category_tree_forget

        # The category tree each process keeps for a few seconds (catalog.selectors.category_tree).
        post_save.connect(category_tree_forget, sender=Category, dispatch_uid="catalog.category_tree_forget.save")
        post_delete.connect(category_tree_forget, sender=Category, dispatch_uid="catalog.category_tree_forget.delete")
