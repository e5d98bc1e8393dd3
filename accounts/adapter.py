"""allauth, adapted: client addresses from the trusted proxies only, and the login locks."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from django.core.exceptions import PermissionDenied

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
