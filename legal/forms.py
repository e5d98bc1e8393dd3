from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from marketplace.text import email_domain_suggestion, email_normalise

from . import selectors, services

FIELD = "accept_agreements"
# The address a likely misspelling was pointed out for (SignupForm.clean).
CHECKED_FIELD = "email_checked"


def agreement_title(label: str) -> str:
    """An agreement's title as the language writes it: 《用户协议》 in Chinese, plain in English."""
    return pgettext("an agreement's title; Chinese adds book-title marks", "%(title)s") % {"title": label}


def agreements_label(versions) -> SafeString:
    """ "I have read and agree to 《…》 and 《…》", each title a link that opens in a new tab."""
    links = format_html_join(
        pgettext("list separator", ", "),
        '<a href="{}" target="_blank" rel="noopener">{}</a>',
        ((v.url, agreement_title(v.label)) for v in versions),
    )
    return format_html("{} {}", _("I have read and agree to"), links)


class SignupForm(AllauthSignupForm):
    """allauth's sign-up (settings.ACCOUNT_FORMS) with the acceptance of the user agreement and
    the privacy policy in force; recorded with the IP when the account is made. With none
    published, there is nothing to accept and no box."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields[CHECKED_FIELD] = forms.CharField(required=False, max_length=254, widget=forms.HiddenInput)
        self.agreements = selectors.required_for(kinds=selectors.MEMBER_KINDS)
        if self.agreements:
            self.fields[FIELD] = forms.BooleanField(
                required=True,
                label=agreements_label(self.agreements),
                error_messages={"required": gettext_lazy("Please read and accept the agreements to sign up.")},
            )

    def clean(self):
        """A likely misspelt mail provider (qq.con) is pointed out, as at the guest checkout
        (``marketplace.text.email_domain_suggestion``): the verification email, password resets
        and order emails go to this address. Submitting the same address again keeps it."""
        data = super().clean()
        email = data.get("email")
        suggestion = email and email_domain_suggestion(email, confirmed=self.data.get(CHECKED_FIELD, ""))
        if suggestion:
            self.add_error(
                "email",
                _("Did you mean %(suggestion)s? Correct the address, or submit again to use %(typed)s as it is.")
                % {"suggestion": suggestion, "typed": email_normalise(email)},
            )
            self.data = self.data.copy()  # the form shown again carries the address pointed out
            self.data[CHECKED_FIELD] = email
        return data

    def signup(self, request, user) -> None:
        if self.agreements:
            services.agreements_accept(versions=self.agreements, user=user, request=request)


class AcceptForm(forms.Form):
    accept = forms.BooleanField(
        required=True, error_messages={"required": gettext_lazy("Please tick the box to accept the new versions.")}
    )
    next = forms.CharField(required=False, max_length=2000)


def guest_agreements_field(form: forms.Form) -> list:
    """Add the guest checkout's acceptance box to ``form`` while versions are in force (the
    user agreement, refund policy and privacy policy); the versions to record."""
    versions = selectors.required_for(kinds=selectors.GUEST_KINDS)
    if versions:
        form.fields[FIELD] = forms.BooleanField(
            required=True,
            label=agreements_label(versions),
            error_messages={"required": gettext_lazy("Please read and accept the agreements to place the order.")},
        )
    return versions
