from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Users")

    def ready(self):
        from marketplace.crypto import declare_encrypted

        # allauth.mfa's authenticators: accounts.adapter.MFAAdapter encrypts the TOTP secret and
        # the recovery codes' seed with marketplace.crypto (manage.py rotate_card_keys, keys_check).
        declare_encrypted("mfa.Authenticator", "data", json_keys=("secret", "seed"))
