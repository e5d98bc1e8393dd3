"""The public trust centre (/trust/): every claim the shop makes, checkable on one page, and the
authorisation-certificate lookup. Both only read; the figures come from the stored snapshot."""

from django.conf import settings
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from compliance.services import audit_denied
from marketplace.http import client_ip
from marketplace.ratelimit import RateLimit, client_network, rate_limits_hit, too_many_requests

from . import selectors

CERTIFICATE_THROTTLED_ACTION = "trust_certificate_lookup_throttled"


def _page_context() -> dict:
    return {
        "figures": selectors.trust_figures(),
        "channels": selectors.live_channels(),
        "payee": selectors.payee(),
        "suppliers": selectors.suppliers_shown(),
    }


@require_GET
def index(request):
    return render(request, "trust/index.html", _page_context())


@require_GET
def certificate_lookup(request):
    """``?number=``: which supplier holds that authorisation certificate, which products on sale it
    covers, until when. Limited per client network (the answers are public, but a crawler
    walking guessed numbers should not have the database for it)."""
    number = selectors.certificate_normalise(request.GET.get("number", ""))
    context = {"number": number, "searched": bool(number)}
    if number:
        limit = RateLimit(
            "trust.certificate",
            client_network(client_ip(request)),
            settings.TRUST_CERTIFICATE_LOOKUP_LIMIT,
            settings.TRUST_CERTIFICATE_LOOKUP_WINDOW_MINUTES * 60,
        )
        throttled = rate_limits_hit([limit])
        if throttled is not None:
            audit_denied(
                action=CERTIFICATE_THROTTLED_ACTION,
                request=request,
                target=number[:120],
                detail=f"{throttled.scope} limit, {throttled.retry_after}s left",
            )
            return too_many_requests(
                request,
                throttled,
                context={"reason": _("Too many certificate lookups from your network in a short while.")},
            )
        context["answer"] = selectors.certificate_find(number=number)
    return render(request, "trust/certificate.html", context)
