"""Sign-up screened by risk control, through allauth's adapter (settings.ACCOUNT_ADAPTER).

accounts sits below risk in the layers (accounts imports only marketplace), so the hook is
this subclass of ``accounts.adapter.AccountAdapter`` in risk, named by the setting: accounts
knows nothing of it, and nothing imports upwards.

- the email field's check: blacklisted email, domain, IP or device, and disposable-mail domains
  refuse with a message on the form (``risk.services.signup_check``);
- a login lock (accounts) that refuses a staff account is audited here, where compliance may
  be imported (``staff_login_locked``);
- saving the account: the registration rules count it per IP, network and device; past a
  threshold the sign-up is refused with a 429 page, and held or blocked as the rule says
  (``risk.services.signup_count``); a rule whose action is "captcha" shows the form again with
  the challenge (risk/captcha.py) until it is solved.
"""

from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.adapter import AccountAdapter
from compliance.services import audit_denied
from marketplace.http import client_ip
from marketplace.ratelimit import Throttled, too_many_requests

from . import services
from .captcha import FIELD as CAPTCHA_FIELD
from .captcha import CaptchaRequired
from .middleware import device_id


def _audit_staff_lock(request, credentials: dict, detail: str) -> None:
    """A login lock that refused a staff account's sign-in goes to the audit log (issue 13: the
    audit log records staff logins and failed ones); a buyer's lock is in the login locks only."""
    login = (credentials.get("email") or credentials.get("username") or "").strip()
    if login and get_user_model().objects.filter(email__iexact=login, is_staff=True).exists():
        audit_denied(action="staff_login_locked", request=request, target=login.lower()[:120], detail=detail)


class RiskAccountAdapter(AccountAdapter):
    def pre_authenticate(self, request, **credentials) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ImmediateHttpResponse:
            _audit_staff_lock(request, credentials, "locked: refused before the password was checked")
            raise

    def authentication_failed(self, request, **credentials) -> None:
        try:
            super().authentication_failed(request, **credentials)
        except ImmediateHttpResponse:
            _audit_staff_lock(request, credentials, "locked by this failure")
            raise

    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        request = context.request
        ip = client_ip(request) if request is not None else None
        device = device_id(request) if request is not None else ""
        try:
            services.signup_check(email=email, ip=ip, device=device)
        except services.RiskRefused as exc:
            raise ValidationError(str(exc), code=exc.code) from None
        return email

    def save_user(self, request, user, form, commit=True):
        email = (form.cleaned_data.get("email") or "").strip().lower()
        try:
            services.signup_count(
                email=email,
                ip=client_ip(request),
                device=device_id(request),
                captcha=request.POST.get(CAPTCHA_FIELD, ""),
            )
        except CaptchaRequired as exc:  # a rule asks for a solved challenge: the form again, with it
            form.add_error(None, str(exc))
            context = {"form": form, "captcha": True, "login_url": reverse("account_login")}
            raise ImmediateHttpResponse(render(request, "account/signup.html", context, status=400)) from None
        except services.RiskRefused as exc:
            retry = int(exc.extra.get("retry_after") or 60)
            reason = _(
                "Too many accounts were registered from your network or device in a short time. To protect "
                "the platform, sign-ups from it are paused; our risk team reviews them."
            )
            hint = _("If you already have an account, you can sign in.")
            throttled = Throttled("signup", "", retry)
            raise ImmediateHttpResponse(
                too_many_requests(request, throttled, context={"reason": reason, "hint": hint})
            ) from None
        user = super().save_user(request, user, form, commit)
        services.signup_record(user=user, ip=client_ip(request), device=device_id(request))
        return user
