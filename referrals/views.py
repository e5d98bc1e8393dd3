"""The invitation link (/r/<code>/), the inviter's page and poster (/accounts/invite/)."""

from decimal import Decimal

import segno
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from . import selectors, services

COOKIE = "mk_invite"
SALT = "referrals.invitation"


def invitation_code(request) -> str:
    """The code of the invitation link this browser followed: only from the server's signed
    cookie (a forged or expired one reads as none)."""
    try:
        return request.get_signed_cookie(COOKIE, default="", salt=SALT, max_age=settings.REFERRAL_COOKIE_DAYS * 86400)
    except signing.BadSignature:
        return ""


@require_GET
def landing(request, code: str):
    """Someone followed a member's link: remembered (signed cookie), then on to sign up. A
    signed-in member (the inviter too) just goes to the shop: invitations are for new members."""
    if request.user.is_authenticated:
        return redirect("catalog:home")
    if selectors.inviter_of_code(code) is None:
        return redirect("catalog:home")
    response = redirect("account_signup")
    response.set_signed_cookie(
        COOKIE,
        code.strip().lower(),
        salt=SALT,
        max_age=settings.REFERRAL_COOKIE_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
    return response


def invite_url(code: str) -> str:
    return f"{settings.SITE_URL}{reverse('referrals:landing', args=[code])}"


def _qr_svg(url: str, scale: int) -> str:
    return segno.make(url, error="m").svg_inline(scale=scale, dark="#1f2937", border=2)


def _common(request) -> dict:
    invite = selectors.invite_code_of(request.user)
    url = invite_url(invite.code) if invite else ""
    return {
        "invite": invite,
        "invite_url": url,
        "reward": Decimal(settings.REFERRAL_REWARD_AMOUNT),
        "window_days": settings.REFUND_WINDOW_DAYS,
    }


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def invite(request):
    """The inviter's page: the link, the poster, the invitations and their rewards. The code is
    made by a POST (pages never write)."""
    if request.method == "POST":
        services.invite_code_get(user=request.user)
        return redirect("referrals:invite")
    context = _common(request)
    context.update(
        invitations=selectors.invitations_of(request.user),
        totals=selectors.totals_of(request.user),
        qr_svg=_qr_svg(context["invite_url"], 4) if context["invite"] else "",
    )
    return render(request, "referrals/invite.html", context)


@login_required
@never_cache
@require_GET
def poster(request):
    """The printable poster: the site's name, the invitation, the QR code and the link."""
    context = _common(request)
    if context["invite"] is None:
        return redirect("referrals:invite")
    context["qr_svg"] = _qr_svg(context["invite_url"], 8)
    return render(request, "referrals/poster.html", context)


@login_required
@never_cache
@require_GET
def poster_svg(request):
    """The same poster as one SVG file (to save on a phone and share in a chat)."""
    invite = selectors.invite_code_of(request.user)
    if invite is None:
        raise Http404
    url = invite_url(invite.code)
    qr = segno.make(url, error="m")
    size = qr.symbol_size(scale=1, border=2)[0]
    scale = 520 / size
    cells = []
    for y, row in enumerate(qr.matrix_iter(scale=1, border=2)):
        for x, dark in enumerate(row):
            if dark:
                cells.append(f"M{x} {y}h1v1h-1z")
    svg = render_to_string(
        "referrals/poster.svg",
        {"scale": f"{scale:.4f}", "path": "".join(cells), "invite_url": url},
        request=request,
    )
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="invite-{invite.code}.svg"'
    return response
