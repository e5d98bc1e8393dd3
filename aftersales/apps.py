from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class AftersalesConfig(AppConfig):
    name = "aftersales"
    verbose_name = _("After-sales")

    def ready(self):
        from allauth.account.signals import email_confirmed
        from django.contrib.auth.signals import user_logged_in

        from orders.selectors.orders import order_page_flag

        from .models import SlaPolicy
        from .services import claims, no_reason, promises

        # The order page's read of an order says whether it has refund requests (one read fewer).
        order_page_flag(no_reason.REQUESTS_FLAG, no_reason.refund_requests_flag)

        post_save.connect(promises.forget, sender=SlaPolicy, dispatch_uid="aftersales.promises.save")
        post_delete.connect(promises.forget, sender=SlaPolicy, dispatch_uid="aftersales.promises.delete")
        # The account hooks (allauth's for a verified address, Django's for every login, the admin's
        # too): a verified address claims its guest orders (services.claims).
        email_confirmed.connect(claims.on_email_confirmed, dispatch_uid="aftersales.claims.confirmed")
        user_logged_in.connect(claims.on_user_logged_in, dispatch_uid="aftersales.claims.login")
