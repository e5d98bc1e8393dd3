"""Closing an account: the person's data is anonymised, the records are kept.

电子商务法 第三十一条 keeps transaction records (orders, payments, refunds, the ledger, tickets, the
audit log) at least three years, so an account is never deleted; 电子商务法 第二十四条 and 个人信息保护法
第四十七条 ask that a user can close it and that their personal information is then deleted or
anonymised. ``account_close`` does both: the login, the names, the email and the phone become a
placeholder (``closed-<id>``), the ways in (password, email addresses, sessions, API keys,
two-factor) are removed, and the email is masked where records copied it (guest orders placed
with it, lookup links, risk and credit rows, the audit log, ticket messages). The orders,
payments, ledger entries and tickets stay, linked to the same (now anonymous) user, amounts
intact. It lives in aftersales, the top layer, because it reads orders, payments and tickets.
"""

from __future__ import annotations

import ipaddress
from importlib import import_module

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Replace
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import ApiKey
from compliance.models import AuditEvent, CreditEvent, CreditOverride
from compliance.services import audit_record
from ledger import selectors as ledger_selectors
from ledger.models import Account
from legal.models import AgreementAcceptance
from marketplace.errors import Conflict
from orders.models import CodeReveal, GuestLookupLink, Order
from payments.models import Refund
from risk.models import Alert, Signup

from ..models import RefundRequest, Ticket, TicketMessage

PLACEHOLDER_DOMAIN = "closed.invalid"  # RFC 2606: never a real mailbox


class AccountCloseRefused(Conflict):
    code = "account_close_refused"


def placeholder(user) -> str:
    return f"closed-{user.pk}"


def _mask_ip(ip: str | None) -> str | None:
    """An address reduced to its network (/24, IPv6 /48): still evidence of where, no longer whose."""
    if not ip:
        return ip
    addr = ipaddress.ip_address(ip)
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _emails(user) -> set[str]:
    """The account's addresses (its login and allauth's), lower case."""
    found = {user.email} | set(EmailAddress.objects.filter(user=user).values_list("email", flat=True))
    return {e.lower() for e in found if e}


def account_close_blockers(*, user) -> list[str]:
    """Why ``user`` cannot be closed now (empty: it can)."""
    emails = {user.email.lower()} | {
        e.lower() for e in EmailAddress.objects.filter(user=user).values_list("email", flat=True)
    }
    orders = Order.objects.filter(Q(buyer=user) | Q(buyer__isnull=True, guest_email__in=emails))
    reasons = []
    if orders.filter(status__in=[Order.Status.PAID, Order.Status.REFUND_PENDING]).exists():
        reasons.append(_("An order is paid but not yet delivered or refunded."))
    if Refund.objects.filter(order__in=orders).exclude(status=Refund.Status.SUCCEEDED).exists():
        reasons.append(_("A refund is still in progress."))
    if RefundRequest.objects.filter(order__in=orders, status=RefundRequest.Status.UNDER_REVIEW).exists():
        reasons.append(_("A refund request is under review."))
    if (
        Ticket.objects.filter(Q(user=user) | Q(order__in=orders))
        .exclude(status__in=[Ticket.Status.RESOLVED, Ticket.Status.CLOSED])
        .exists()
    ):
        reasons.append(_("A support ticket is still open."))
    if any(ledger_selectors.balance_of(account) != 0 for account in Account.objects.filter(owner=user)):
        reasons.append(_("Your balance or commission is not zero: withdraw or spend it first."))
    return reasons


def account_close(*, user, by, request=None) -> None:
    """Anonymise ``user`` (by themselves or by staff ``by``) and keep every record; audited.
    Refused (``AccountCloseRefused``) while money or a case is still open."""
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if not user.is_active and user.username == placeholder(user):
            return  # already closed
        reasons = account_close_blockers(user=user)
        if reasons:
            raise AccountCloseRefused(
                _("The account cannot be closed yet: %(reasons)s") % {"reasons": " ".join(reasons)}
            )
        emails = sorted(_emails(user))
        name = placeholder(user)
        masked_email = f"{name}@{PLACEHOLDER_DOMAIN}"

        # Where a record copied the email (guest orders placed with it before signing up, the
        # lookup links sent to it, risk and credit rows, the audit log, ticket messages).
        for email in emails:
            Order.objects.filter(buyer__isnull=True, guest_email__iexact=email).update(guest_email=masked_email)
            GuestLookupLink.objects.filter(email__iexact=email).update(email=masked_email)
            for model in (CreditEvent, CreditOverride, Alert):
                model.objects.filter(email__iexact=email).update(email=masked_email)
            AuditEvent.objects.filter(target__iexact=email).update(target=masked_email)
            AuditEvent.objects.filter(detail__icontains=email).update(
                detail=Replace("detail", Value(email), Value(masked_email))
            )
            AgreementAcceptance.objects.filter(email__iexact=email).update(email=masked_email)
            TicketMessage.objects.filter(body__icontains=email).update(
                body=Replace("body", Value(email), Value(masked_email))
            )

        # The member's own orders keep buyer, amounts and history; the client they came from is
        # reduced to its network, the device hash dropped.
        for order in Order.objects.filter(buyer=user).exclude(buyer_ip__isnull=True).only("pk", "buyer_ip"):
            Order.objects.filter(pk=order.pk).update(buyer_ip=_mask_ip(order.buyer_ip))
        Order.objects.filter(buyer=user).update(buyer_device="")
        for reveal in CodeReveal.objects.filter(user=user).exclude(ip__isnull=True).only("pk", "ip"):
            CodeReveal.objects.filter(pk=reveal.pk).update(ip=_mask_ip(reveal.ip), user_agent="")
        Signup.objects.filter(user=user).update(ip=None, device="")
        Account.objects.filter(owner=user).update(name=f"Account of {name}")

        # The ways in.
        EmailAddress.objects.filter(user=user).delete()
        Authenticator.objects.filter(user=user).delete()
        ApiKey.objects.filter(agent__user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), previous_secret="", previous_valid_until=None
        )
        _sessions_end(user)

        user.username = name
        user.email = masked_email
        user.first_name = user.last_name = ""
        user.phone = ""
        user.is_active = False
        user.set_unusable_password()
        user.save(update_fields=["username", "email", "first_name", "last_name", "phone", "is_active", "password"])
        audit_record(
            action="account_close",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=by,
            target=name,
            request=request,
            detail="by the account holder" if by is not None and by.pk == user.pk else "by staff",
        )


def _sessions_end(user) -> None:
    """End every session of ``user``, through the session engine so its cache forgets them too
    (an inactive user is signed out by Django anyway: ModelBackend refuses inactive users)."""
    engine = import_module(settings.SESSION_ENGINE)
    pk = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == pk:
            engine.SessionStore(session_key=session.session_key).delete()
