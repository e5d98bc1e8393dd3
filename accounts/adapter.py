"""allauth, adapted: client addresses from the trusted proxies only, the login locks, and
two-factor authentication's secrets encrypted at rest."""

import io

import segno
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.core.exceptions import PermissionDenied

from marketplace import crypto
from marketplace.http import client_ip

from . import selectors, services
from .views import login_locked


def _login(credentials: dict) -> str:
    # The login form passes "email"; reauthentication passes the email and the username.
    return str(credentials.get("email") or credentials.get("username") or "")


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request) -> str:
        """For allauth's own rate limits too (sign-up, reset, login requests): NUM_PROXIES-aware,
        never an X-Forwarded-For the client wrote."""
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def pre_authenticate(self, request, **credentials) -> None:
        """While a lock holds no password is checked: the right one is refused too."""
        lock = selectors.login_lock_find(login=_login(credentials), ip=client_ip(request))
        if lock:
            raise ImmediateHttpResponse(login_locked(request, lock))

    def authenticate(self, request, **credentials):
        user = super().authenticate(request, **credentials)
        if user:
            services.login_success_record(login=_login(credentials), ip=client_ip(request))
        return user

    def authentication_failed(self, request, **credentials) -> None:
        lock = services.login_failure_record(login=_login(credentials), ip=client_ip(request))
        if lock:
            raise ImmediateHttpResponse(login_locked(request, lock))

    def set_password(self, user, password: str) -> None:
        """A new password (the reset link, or a change while signed in) proves the owner: their
        account is unlocked, for everyone and for the client they did it from."""
        super().set_password(user, password)
        request = context.request
        services.login_locks_clear(login=user.email, ip=client_ip(request) if request else None)


class MFAAdapter(DefaultMFAAdapter):
    """allauth.mfa with the TOTP secret and the recovery codes' seed encrypted like card codes
    (CARD_CODE_KEYS, rotatable), QR codes drawn by segno (already used by the cashier), and a
    staff member's last authenticator kept while a second factor is required of staff."""

    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)

    def build_totp_svg(self, url: str) -> str:
        """A standalone SVG (allauth shows it as a data: URI image)."""
        out = io.BytesIO()
        segno.make(url, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False)
        return out.getvalue().decode()

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        """Staff cannot remove the authenticator that admin needs (another staff member with the
        permission can reset it in admin, see compliance.admin)."""
        user = authenticator.user
        if not (settings.STAFF_MFA_REQUIRED and user.is_staff):
            return True
        if authenticator.type == Authenticator.Type.RECOVERY_CODES:
            return True
        others = Authenticator.objects.filter(
            user_id=user.pk, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
        ).exclude(pk=authenticator.pk)
        return others.exists()
