"""The rate limit of opening tickets (``marketplace.ratelimit.rate_limited``, thresholds in
settings.RATE_LIMITS["ticket"]): per client network and per account, or per guest order."""

from django.utils.translation import gettext_lazy as _

from marketplace.ratelimit import rate_limited
from orders.views.limits import guest_order_subject

REASON = _("There were too many tickets opened from your network or for your account in a short time.")
HINT = _("Your open tickets are in your ticket list: you can add to them at any time.")
GUEST_HINT = _("Your open tickets are on your order page: you can add to them at any time.")


ticket_limited = rate_limited("ticket", reason=REASON, hint=HINT)
guest_ticket_limited = rate_limited("ticket", subject=guest_order_subject, reason=REASON, hint=GUEST_HINT)
