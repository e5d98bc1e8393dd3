"""The rate limits of orders' pages (``marketplace.ratelimit.rate_limited``, thresholds in
settings.RATE_LIMITS): placing orders and revealing codes, per client network and per account,
guest email or guest order. Each limited view takes one decorator line from here."""

from django.utils.translation import gettext_lazy as _

from marketplace.admission import admission_controlled
from marketplace.ratelimit import member_subject, rate_limited
from marketplace.text import email_normalise


def _checkout_subject(request, *args, **kwargs) -> str | None:
    """The account placing the order; for a guest, the email the order is for."""
    member = member_subject(request)
    if member:
        return member
    email = email_normalise(request.POST.get("guest_email") or "")
    return f"email:{email}" if email else None


def guest_order_subject(request, number, *args, **kwargs) -> str:
    """A guest order's limits count per order (a guest has no account); after-sales' too."""
    return f"order:{number}"


_checkout_rate_limited = rate_limited(
    "checkout",
    subject=_checkout_subject,
    reason=_(
        "There were too many orders placed from your network or for your account in a short time. "
        "To keep stock available to every buyer, checkout is paused for a while."
    ),
    hint=_("Orders you have already placed are not affected: they can still be paid."),
)


def checkout_limited(view):
    """Placing orders: admission control first (a burst past the platform's capacity is refused
    at once, before anything is counted against the buyer: marketplace.admission), then the
    buyer's own rate limits."""
    return admission_controlled(_checkout_rate_limited(view))


reveal_limited = rate_limited(
    "reveal",
    reason=_("There were too many code reveals from your network or account in a short time."),
    hint=_("Your codes stay in your order: you can reveal them later."),
)

guest_reveal_limited = rate_limited(
    "reveal",
    subject=guest_order_subject,
    reason=_("There were too many code reveals from your network or for this order in a short time."),
    hint=_("Your codes stay in your order: you can reveal them later."),
)
