from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache

from .selectors import LoginLock


@never_cache
def health(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


def login_locked(request, lock: LoginLock):
    """The page for a login refused by a lock (accounts.services): which lock, how long, and the
    way in that needs no wait (a password reset by email). 429 with Retry-After."""
    response = render(
        request,
        "account/login_locked.html",
        {"lock": lock, "minutes": lock.minutes_left},
        status=429,
    )
    response["Retry-After"] = str(lock.seconds_left)
    add_never_cache_headers(response)
    return response
