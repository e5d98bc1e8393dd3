"""Django's AuthenticationMiddleware, with sessions of the backends' previous dotted paths renamed.

A session stores the dotted path of the backend that logged its user in
(``_auth_user_backend``), and Django loads no user whose path is not in AUTHENTICATION_BACKENDS.
The backends moved to ``accounts.backends`` (their ``get_user`` reads the user once compiled):
sessions written under the old paths are renamed here, before their user is loaded, so nobody
is logged out by the move. The session is written back only when a name changed; nothing is
read before ``request.user`` is (a request that never asks for its user loads no session).
"""

from functools import partial

from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth import middleware as auth_middleware
from django.utils.functional import SimpleLazyObject

from accounts.backends import RENAMED


def _user(request):
    if not hasattr(request, "_cached_user"):  # Django's own cache of the request's user
        renamed = RENAMED.get(request.session.get(BACKEND_SESSION_KEY))
        if renamed is not None:
            request.session[BACKEND_SESSION_KEY] = renamed
    return auth_middleware.get_user(request)


async def _auser(request):
    if not hasattr(request, "_acached_user"):
        renamed = RENAMED.get(await request.session.aget(BACKEND_SESSION_KEY))
        if renamed is not None:
            await request.session.aset(BACKEND_SESSION_KEY, renamed)
    return await auth_middleware.auser(request)


class AuthenticationMiddleware(auth_middleware.AuthenticationMiddleware):
    def process_request(self, request):
        super().process_request(request)  # its checks (a session middleware before it)
        request.user = SimpleLazyObject(partial(_user, request))
        request.auser = partial(_auser, request)
