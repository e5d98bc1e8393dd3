"""Guest orders joining an account: once a member's email address is verified, the orders
bought without an account at that address become the member's own (``guest_orders_attach``).

Only a verified address attaches: anyone can sign up with any email, so an unverified one
must not hand them a stranger's codes. The caller (the account's hook in ``aftersales.apps``)
checks the verification; this module checks nothing but the address.
"""

from django.db import transaction
from django.utils import timezone

from marketplace.text import email_normalise

from ..models import ATTACH_NOTE_PREFIX, GuestAccessCode, Order, OrderStatusChange


def guest_orders_attach(*, user, email: str) -> list[str]:
    """Make the guest orders of ``email`` ``user``'s orders; the numbers attached, oldest first.

    Each order's history records it (its status does not change); the guest's query password
    and unused emailed codes stop working, since the member's login now guards the order.
    Running it again attaches nothing more (an order has one buyer).
    """
    email = email_normalise(email)
    if not email or user is None or not user.pk:
        return []
    now = timezone.now()
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(of=("self",))
            .filter(buyer__isnull=True, guest_email=email)
            .order_by("id")
            .only("pk", "number", "status")
        )
        if not orders:
            return []
        ids = [o.pk for o in orders]
        Order.objects.filter(pk__in=ids).update(buyer=user, guest_email="", query_password="")
        GuestAccessCode.objects.filter(order_id__in=ids, used_at__isnull=True).update(used_at=now)
        OrderStatusChange.objects.bulk_create(
            [
                OrderStatusChange(
                    order_id=o.pk,
                    from_status=o.status,
                    to_status=o.status,
                    actor=user,
                    note=f"{ATTACH_NOTE_PREFIX}{email}",
                )
                for o in orders
            ]
        )
    return [o.number for o in orders]
