import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace.http import client_ip
from orders import selectors as orders

from . import services
from .gateways import enabled_gateways, get_gateway


@login_required
@never_cache
def choose(request, number):
    """Choose how to pay. Lives here, not in orders: paying is this app's concern."""
    order = orders.order_for_buyer(request.user, number)
    if not order.is_payable:
        return redirect(order)
    return render(request, "payments/choose.html", {"order": order, "gateways": enabled_gateways().values()})


@login_required
@never_cache
def sandbox_cashier(request, number):
    get_gateway("sandbox")  # 404 when disabled (always in production)
    order = orders.order_for_buyer(request.user, number)
    if request.method == "POST":
        result = services.sandbox_pay(order_number=order.number, remote_addr=client_ip(request))
        order.refresh_from_db(fields=["status"])
        if result.ok and order.status == order.Status.DELIVERED:
            messages.success(request, _("Payment received. Your codes are ready below."))
        elif result.ok:
            messages.success(request, _("Payment received. Your codes are being delivered."))
        else:
            messages.error(request, _("The payment was refused: %(reason)s") % {"reason": result.reason})
        return redirect(order)
    if not order.is_payable:
        return redirect(order)
    pay_url = request.build_absolute_uri(reverse("payments:sandbox", args=[order.number]))
    qr_svg = segno.make(pay_url, error="m").svg_inline(scale=4, dark="#1f2937")
    return render(request, "payments/sandbox.html", {"order": order, "qr_svg": qr_svg})


@csrf_exempt
@require_POST
def notify(request, gateway):
    """Gateways' asynchronous notifications: verified by signature, applied once."""
    gw = get_gateway(gateway)  # 404 for an unknown or disabled channel
    result = services.notification_receive(
        gateway_code=gateway, headers=request.headers, body=request.body, remote_addr=client_ip(request)
    )
    return gw.reply(ok=result.ok)
