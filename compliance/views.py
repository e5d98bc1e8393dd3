"""The public qualifications page (part of the trust pages at /trust/) and the licence image."""

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.utils.http import http_date, quote_etag
from django.views.decorators.http import require_GET

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
