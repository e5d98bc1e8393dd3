"""The sign-up adapter (settings.ACCOUNT_ADAPTER): risk's screens, then the invitation.

referrals sits above risk, so it subclasses risk's adapter; nothing below knows of it. The
inviter is read only from the cookie /r/<code>/ set, signed by the server
(``django.core.signing`` through ``get_signed_cookie``): a cookie the client wrote or altered
fails its signature and is ignored, as is one past REFERRAL_COOKIE_DAYS."""

from marketplace.http import client_ip
from risk.adapter import RiskAccountAdapter
from risk.middleware import device_id

from . import services
from .views import invitation_code


class ReferralAccountAdapter(RiskAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit)
        if commit and user.pk is not None:
            services.invite_code_get(user=user)  # every member has a link from the start
        code = invitation_code(request)
        if code and commit and user.pk is not None:
            services.referral_record(invitee=user, code=code, ip=client_ip(request), device=device_id(request))
        return user
