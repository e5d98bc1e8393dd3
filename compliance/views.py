"""The public qualifications page (part of the trust pages at /trust/) and the licence image; the
buyer's real-name verification page (/accounts/realname/)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control
from django.utils.http import http_date, quote_etag
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.permissions import staff_can_view

from . import selectors
from .models import Qualification


@require_GET
def qualifications(request):
    """Each shown qualification with its validity (expired ones marked so) and the licence image."""
    return render(request, "compliance/qualifications.html", {"qualifications": selectors.qualifications_shown()})


@require_GET
def qualification_image(request, pk: int):
    """The licence image, from the database (never a public MEDIA file): 404 unless the record
    exists, has an image and is shown (staff who may view qualifications also see hidden ones)."""
    found = selectors.qualification_image(pk=pk, staff_preview=staff_can_view(request.user, Qualification))
    if found is None:
        raise Http404
    data, version = found
    response = HttpResponse(data, content_type="image/jpeg")
    response["Content-Length"] = str(len(data))
    response["ETag"] = quote_etag(f"{pk}-{version}")
    response["Last-Modified"] = http_date(version)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    # Pages link it with ?v=<version>: a new image gets a new address. Not in shared caches: a
    # record hidden or removed must stop being served.
    patch_cache_control(response, private=True, max_age=3600)
    return response


@login_required
@never_cache
def realname(request):
    """The buyer's real-name verification (/accounts/realname/): a name and an identity number,
    checked locally first (GB 11643-1999), then by the provider. Once verified, shown masked.
    ``?next=`` (a page of this site) is where the buyer goes back to once verified."""
    from django.utils.http import url_has_allowed_host_and_scheme

    from . import realname as service

    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    verification = service.realname_of(user=request.user)
    error = None
    name = ""
    if request.method == "POST" and verification is None:
        name = request.POST.get("real_name", "")[:100]
        try:
            verification = service.realname_verify(
                subject=service.Subject(user=request.user),
                name=name,
                id_number=request.POST.get("id_number", "")[:40],
            )
        except PASS_THROUGH:
            raise
        except ServiceError as exc:  # IdNumberError, RealNameError, RealNameUnavailable, Conflict
            error = exc
        else:
            messages.success(request, _("Your real name is verified."))
            return redirect(next_url or "realname")
    return render(
        request,
        "compliance/realname.html",
        {"verification": verification, "error": error, "name": name, "next": next_url},
        status=400 if error is not None else 200,
    )
