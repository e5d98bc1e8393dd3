"""A member claims what they did as a guest: once an email address of theirs is verified, the
orders bought without an account at that address (with their after-sales) become theirs.

allauth tells us through its signals (``aftersales.apps``): they are the account library's one
hook, and each only calls ``guest_history_claim``, so the flow is read here, not in receivers.
This lives at the top layer because a guest's history spans orders and after-sales.
"""

from allauth.account.models import EmailAddress
from django.contrib import messages
from django.db import transaction
from django.utils.translation import ngettext

from compliance import services as compliance
from marketplace.text import email_normalise
from orders.services.attach import guest_orders_attach

from ..models import ArbitrationCase, RefundRequest, Ticket, TicketMessage


def guest_history_claim(*, user, email: str, request=None) -> list[str]:
    """Attach the guest orders of the verified ``email`` to ``user``; the order numbers, oldest
    first (none: nothing to do). Audited when anything moved."""
    with transaction.atomic():
        numbers = guest_orders_attach(user=user, email=email)
        # What the guest did on those orders is the member's now: tickets (and the guest's own
        # messages in them), refund requests, arbitration cases, and the credit events of the
        # address (the next issue's rating reads them by user).
        tickets = Ticket.objects.filter(user__isnull=True, order__number__in=numbers)
        TicketMessage.objects.filter(ticket__in=tickets, author__isnull=True, from_staff=False).update(author=user)
        ArbitrationCase.objects.filter(ticket__in=tickets, requested_by__isnull=True).update(requested_by=user)
        RefundRequest.objects.filter(user__isnull=True, order__number__in=numbers).update(user=user)
        tickets.update(user=user)
        compliance.credit_events_attach(email=email_normalise(email), user=user)
        if numbers:
            compliance.audit_record(
                action="guest_orders.attach",
                outcome="allowed",
                actor=user,
                target=email[:120],
                request=request,
                detail=", ".join(numbers)[:500],
            )
    return numbers


def verified_emails(user) -> list[str]:
    """The user's verified addresses (allauth's records), the ones a claim may use."""
    return list(EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True))


def on_email_confirmed(sender, request, email_address, **kwargs) -> None:
    """allauth: an address was just verified; claim its guest orders for its user."""
    if email_address.user_id and email_address.verified:
        _claim_and_tell(request, email_address.user, [email_address.email])


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    """Any login (Django's signal): guest orders bought since at a verified address join too."""
    _claim_and_tell(request, user, verified_emails(user))


def _claim_and_tell(request, user, emails: list[str]) -> None:
    numbers = [n for email in emails for n in guest_history_claim(user=user, email=email, request=request)]
    if numbers and request is not None:
        messages.success(
            request,
            ngettext(
                "%(count)d order you bought without an account at this email is now in My orders.",
                "%(count)d orders you bought without an account at this email are now in My orders.",
                len(numbers),
            )
            % {"count": len(numbers)},
            fail_silently=True,  # a login without the messages middleware (a test client's)
        )
