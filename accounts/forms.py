"""allauth.mfa's security-key forms with their name field labelled in the reader's language
(allauth leaves it to Django, which shows the bare field name "Name")."""

from allauth.mfa.webauthn.forms import AddWebAuthnForm, EditWebAuthnForm
from django.utils.translation import gettext_lazy as _

KEY_NAME = _("Security key name")


class KeyAddForm(AddWebAuthnForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].label = KEY_NAME
        self.fields["name"].help_text = _("So you can tell your keys apart, for example “YubiKey at the office”.")


class KeyEditForm(EditWebAuthnForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].label = KEY_NAME
