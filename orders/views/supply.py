"""Suppliers' callbacks about our supplier orders (issue 16): POSTed by the supplier's system,
no session, no CSRF (each is verified by its signature: ``supply.services.callback_accept``).

A forged, tampered, stale or replayed callback is answered 400 and changes nothing; the same
event again (a duplicate) is answered as accepted and changes nothing; a verified one is
applied to our supplier order (``orders.services.upstream``): delivered, failed (refunded), or
still pending.
"""

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from supply import services as supply_services
from supply.adapters.base import CallbackRejected
from supply.models import SupplierConnection

from ..services import upstream

log = logging.getLogger(__name__)


def _accepted(connection: SupplierConnection) -> HttpResponse:
    """What the supplier expects once a callback is taken: generic APIs mostly the text
    "success"; another platform running this product any 2xx (JSON here)."""
    if connection.kind == SupplierConnection.Kind.KAMARKET:
        return JsonResponse({"ok": True})
    return HttpResponse("success", content_type="text/plain")


@csrf_exempt
@require_POST
def callback(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(SupplierConnection, pk=connection_id)
    try:
        accepted = supply_services.callback_accept(
            connection=connection,
            headers=dict(request.headers),
            body=request.body,
            path=request.get_full_path(),
        )
    except CallbackRejected as exc:
        return HttpResponse(f"rejected: {exc.code}", status=400, content_type="text/plain")
    if not accepted.duplicate:
        upstream.upstream_callback(connection=connection, result=accepted.callback.order)
    else:
        log.info("duplicate callback %s from %s: nothing to do", accepted.callback.event_id, connection.name)
    return _accepted(connection)
