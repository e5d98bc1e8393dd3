"""Guests' orders: the signed link to an order, and the proofs that let one browser reveal a
guest order's codes (the query password, or a one-time code emailed to the guest address).

The link alone shows an order (status, items, amounts), never a code. A proof is checked
here; remembering it for a while (the browser's session) is the views' part. Failed proofs
are audited (``compliance.services.audit_denied``).
"""

import string
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from compliance import selectors as audit_log
from compliance import services as compliance
from compliance.models import AuditEvent
from marketplace.errors import Forbidden, NotFound, ServiceError
from marketplace.randomness import random_chars

from ..models import ATTACH_NOTE_PREFIX, EmailRefusal, GuestAccessCode, Order, OrderStatusChange

LINK_SALT = "orders.guest.link"
CODE_DIGITS = 6


class GuestProofError(ServiceError):
    """A wrong, expired or used query password or code: the message says what to do."""

    code = "guest_proof_refused"
    status = 403


class TooManyCodes(ServiceError):
    code = "guest_codes_throttled"
    status = 429


def guest_link_token(*, number: str) -> str:
    """The signed, timestamped token of a guest order's link (``guest_link_number`` reads it)."""
    return signing.TimestampSigner(salt=LINK_SALT).sign(number)


def guest_link_url(*, order: Order) -> str:
    """The full link to a guest order, for its emails."""
    return settings.SITE_URL + reverse("orders:guest_link", args=[guest_link_token(number=order.number)])


def _link_invalid() -> NotFound:
    return NotFound(_("This link is not valid or has expired."), code="guest_link_invalid")


def _link_unsigned(token: str) -> str:
    """The order number a link was signed for, or ``NotFound`` when tampered with or expired."""
    try:
        return signing.TimestampSigner(salt=LINK_SALT).unsign(
            token, max_age=timedelta(days=settings.GUEST_LINK_MAX_AGE_DAYS)
        )
    except signing.BadSignature:  # SignatureExpired is one
        raise _link_invalid() from None


def guest_link_number(*, token: str) -> str:
    """The order number a link was signed for; ``NotFound`` when it is tampered with, expired
    or names no guest order (all alike: a link proves nothing else)."""
    number, attached = guest_link_resolve(token=token)
    if attached:
        raise _link_invalid()
    return number


def guest_link_resolve(*, token: str) -> tuple[str, bool]:
    """The order number of a signed link, and whether the order has since joined the account
    of its address (``orders.services.attach``): its page is then the member's, behind the
    login. ``NotFound`` for a tampered or expired link, as ``guest_link_number``."""
    number = _link_unsigned(token)
    if Order.objects.filter(number=number, buyer__isnull=True).exists():
        return number, False
    if OrderStatusChange.objects.filter(order__number=number, note__startswith=ATTACH_NOTE_PREFIX).exists():
        return number, True
    raise _link_invalid()


def guest_order(*, number: str) -> Order:
    """A guest order by number, or ``NotFound`` (a member's order is not a guest order)."""
    order = Order.objects.filter(number=number, buyer__isnull=True).first()
    if order is None:
        raise NotFound(_("No such order."), code="order_not_found")
    return order


PASSWORD_ACTION = "guest_order.password"


def guest_password_check(*, order: Order, password: str, request=None) -> None:
    """The guest's query password for ``order``; ``GuestProofError`` (audited) when wrong or
    when the order has none. After GUEST_PASSWORD_MAX_FAILURES wrong ones in an hour, even the
    right one is refused for the rest of the hour (``TooManyCodes``; the emailed code still works)."""
    since = timezone.now() - timedelta(hours=1)
    failures = audit_log.audit_denied_count(action=PASSWORD_ACTION, target=order.number, since=since)
    if failures >= settings.GUEST_PASSWORD_MAX_FAILURES:
        compliance.audit_denied(action=PASSWORD_ACTION, request=request, target=order.number, detail="throttled")
        raise TooManyCodes(_("Too many wrong passwords for this order. Use a code sent by email, or try again later."))
    if order.query_password and password and check_password(password, order.query_password):
        return
    compliance.audit_denied(action=PASSWORD_ACTION, request=request, target=order.number, detail="wrong query password")
    raise GuestProofError(_("The query password is not right."))


def guest_code_send(*, order: Order) -> None:
    """Email a fresh one-time code to the guest address of ``order``; earlier codes stop
    working. At most GUEST_CODES_PER_HOUR codes per order an hour (``TooManyCodes``); none to an
    address the mail server refused for good (``GuestProofError``)."""
    now = timezone.now()
    if EmailRefusal.objects.filter(order_id=order.pk, permanent=True, address=order.guest_email).exists():
        # Refused for good (``orders.services.orders.email_refusal_record``): not offered again.
        raise GuestProofError(_("We cannot email a code to this order's address: the mail server refused it."))
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).get(pk=order.pk, buyer__isnull=True)
        recent = GuestAccessCode.objects.filter(order=order, created_at__gte=now - timedelta(hours=1)).count()
        if recent >= settings.GUEST_CODES_PER_HOUR:
            raise TooManyCodes(_("Too many codes were sent for this order. Try again in an hour."))
        GuestAccessCode.objects.filter(order=order, used_at__isnull=True).update(used_at=now)
        code = random_chars(CODE_DIGITS, string.digits)
        GuestAccessCode.objects.create(
            order=order,
            code_hash=make_password(code),
            expires_at=now + timedelta(minutes=settings.GUEST_CODE_MINUTES),
        )
        email = order.guest_email
        number = order.number
        transaction.on_commit(lambda: _email_code(email=email, number=number, code=code))


def _email_code(*, email: str, number: str, code: str) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Your code for order %(number)s: %(code)s") % {"number": number, "code": code}
        body = _(
            "Your one-time code to show the card codes of order %(number)s is:\n\n%(code)s\n\n"
            "It works once, for %(minutes)d minutes. If you did not ask for it, ignore this email: "
            "nobody can see your codes without it."
        ) % {"number": number, "code": code, "minutes": settings.GUEST_CODE_MINUTES}
        send_mail(subject, body, None, [email])


def guest_code_check(*, order: Order, code: str, request=None) -> None:
    """The latest one-time code of ``order``: right, unused, not expired, within its attempts.
    A right code is used up; a wrong one counts an attempt (audited); ``GuestProofError``."""
    now = timezone.now()
    code = (code or "").strip()
    with transaction.atomic():
        latest = GuestAccessCode.objects.select_for_update().filter(order=order).order_by("-id").first()
        if latest is None or latest.used_at is not None:
            why, message = "no live code", _("This code is not valid any more. Ask for a new one.")
        elif latest.expires_at <= now:
            why, message = "expired code", _("This code has expired. Ask for a new one.")
        elif latest.attempts >= settings.GUEST_CODE_MAX_ATTEMPTS:
            why, message = "too many attempts", _("Too many wrong tries. Ask for a new code.")
        elif code and check_password(code, latest.code_hash):
            GuestAccessCode.objects.filter(pk=latest.pk).update(used_at=now)
            return
        else:
            GuestAccessCode.objects.filter(pk=latest.pk).update(attempts=F("attempts") + 1)
            why, message = "wrong code", _("The code is not right.")
    compliance.audit_denied(action="guest_order.code", request=request, target=order.number, detail=why)
    raise GuestProofError(message)


PASSWORD_SET_ACTION = "guest_order.password_set"
# A guest order's query password, wherever it is chosen (the checkout form, guest_password_set).
QUERY_PASSWORD_MIN, QUERY_PASSWORD_MAX = 6, 64


def guest_password_set(*, order: Order, password: str, request=None) -> None:
    """Set the query password of guest ``order`` from the browser that placed it (the view's
    check), when the mail server refused its address (``EmailRefusal``) and it has none: the
    guest then finds the order, and proves it, with its number and this password from any device.

    Why this and no more: the address refused, the emailed link and one-time codes cannot reach
    the buyer, and without a query password nothing else proves the order, so the codes paid for
    could not be shown at all. The browser that placed the order is the one thing the platform
    still knows of its buyer. It may add a proof, never change where emails go (a new address
    would need its own proof, and whoever holds the link must not redirect anything), and never
    replace a password set at checkout. Audited."""
    password = password or ""
    if not QUERY_PASSWORD_MIN <= len(password) <= QUERY_PASSWORD_MAX:
        raise GuestProofError(
            _("The query password needs %(min)d to %(max)d characters.")
            % {"min": QUERY_PASSWORD_MIN, "max": QUERY_PASSWORD_MAX}
        )
    if not EmailRefusal.objects.filter(order_id=order.pk).exists():
        raise GuestProofError(_("This order's email was not refused: use the email we sent you."))
    updated = Order.objects.filter(pk=order.pk, buyer__isnull=True, query_password="").update(
        query_password=make_password(password)
    )
    if not updated:
        compliance.audit_denied(
            action=PASSWORD_SET_ACTION, request=request, target=order.number, detail="has a query password"
        )
        raise GuestProofError(_("This order already has a query password."))
    compliance.audit_record(
        action=PASSWORD_SET_ACTION,
        outcome=AuditEvent.Outcome.ALLOWED,
        request=request,
        target=order.number,
        detail="set by the placing browser after an email refusal",
    )


def guest_reveal_refused(*, order: Order, request=None) -> Forbidden:
    """The refusal of a reveal without a proof in this browser (audited)."""
    compliance.audit_denied(
        action="guest_order.reveal", request=request, target=order.number, detail="no proof in this session"
    )
    return Forbidden(_("Enter the query password or an emailed code first."), code="guest_proof_required")
