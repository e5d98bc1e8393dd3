"""The cookie that lets a guest's browser find its orders again ("my recent orders"): a random
token, long-lived, HttpOnly, Secure in production, SameSite=Lax, of which the server keeps only
the SHA-256 (``orders.models.GuestBrowser``). It lets the browser see those orders, never their
codes: revealing them takes a fresh proof."""

from django.conf import settings

from ..models import Order
from ..services import guest_lookup as services

COOKIE = "guest_orders"


def browser_token(request) -> str | None:
    return request.COOKIES.get(COOKIE) or None


def browser_remember(request, response, orders: list[Order]):
    """Remember guest ``orders`` for this browser, and (re)set its cookie on ``response``."""
    orders = [order for order in orders if order.is_guest]
    if not orders:
        return response
    token = services.guest_browser_remember(token=browser_token(request), orders=orders)
    request.COOKIES[COOKIE] = token  # a second remember in this request finds the same browser
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.GUEST_BROWSER_COOKIE_DAYS * 24 * 3600,
        httponly=True,
        secure=settings.SESSION_COOKIE_SECURE,
        samesite="Lax",
    )
    return response


def browser_forget(request, response):
    services.guest_browser_forget(token=browser_token(request))
    response.delete_cookie(COOKIE, samesite="Lax")
    return response
