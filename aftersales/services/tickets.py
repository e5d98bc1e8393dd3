"""Tickets: a buyer's complaint about an order or a code, threaded with staff, on a clock.

Every status change goes through ``TICKET_FLOW`` on a row locked with ``select_for_update``.
The first-response clock (``first_response_due_at``) stops only when staff post a reply marked
as the resolution plan (or resolve the ticket): an acknowledgement does not count. Internal
notes never reach the buyer. Every public reply emails the other party a link (never the text).

Attachments are images only (PNG, JPEG, WebP: decoded with Pillow, not trusted by name or
declared type), stored under ``PRIVATE_MEDIA_ROOT`` (outside the web root) with a random name
and served by a view, under a random public id, to the ticket's user and to staff who may view
tickets in admin (the model permission, not the staff flag: ``marketplace.permissions``).

A guest order's ticket has no user: the buyer is the order's guest (``Order.guest_email``). The
services take ``user=None`` (``author=None``, ``actor=None``) for that guest, on a ticket of a guest
order; proving that the caller is the guest (the query password or an emailed code, remembered
by the browser's session) is the guest views' part (``aftersales.views.guest``), as a login is the
member views'. Emails to the buyer go to ``buyer_email(ticket)``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _
from PIL import Image

from compliance.selectors import CreditOwnerKeys
from compliance.services import audit_denied
from marketplace.errors import Forbidden, NotFound, ServiceError
from marketplace.permissions import staff_can_view, staff_has_perm
from orders.models import Order, OrderCode
from orders.services.guest import guest_link_url

from ..models import (
    TICKET_FLOW,
    ArbitrationCase,
    Kind,
    ReplyTemplate,
    SlaPolicy,
    Ticket,
    TicketAttachment,
    TicketMessage,
    TicketStatusChange,
)

log = logging.getLogger(__name__)

TicketStatus = Ticket.Status
MAX_ATTACHMENTS = 4
# Pillow format -> (content type, file extension)
IMAGE_FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
DEFAULT_SLA = {"first_response_hours": 48, "warn_after_hours": 36, "resolution_hours": 7 * 24}
# Kinds that are about a delivered code: asking for an order makes sense.
ORDER_KINDS = {Kind.NOT_RECEIVED, Kind.INVALID, Kind.WRONG_ITEM, Kind.REFUND}
OPEN_STATUSES = (TicketStatus.OPEN, TicketStatus.AWAITING_STAFF, TicketStatus.AWAITING_BUYER)
# What the ticket admin's buttons require; staff act on others' tickets only with it.
CHANGE_PERMISSION = "aftersales.change_ticket"


class TicketError(ServiceError):
    """Refused, with a message for the person who asked."""

    code = "ticket_refused"


# --- the buyer: a member, or a guest order's guest -------------------------------------------


def is_buyer(ticket: Ticket, user) -> bool:
    """``user`` is the ticket's buyer: the member who opened it, or (``user`` None) the guest of
    the guest order it is about (the caller has checked the guest's proof)."""
    if user is None:
        return ticket.user_id is None and ticket.order_id is not None
    return ticket.user_id is not None and ticket.user_id == user.pk


def buyer_email(ticket: Ticket) -> str:
    """Where the buyer's emails about ``ticket`` go: the member's address, or the guest order's."""
    if ticket.user is not None:
        return ticket.user.email or ""
    return ticket.order.guest_email if ticket.order is not None else ""


def buyer_label(ticket: Ticket) -> str:
    """The buyer as staff read it: the member's email (or name), or "guest <email>"."""
    if ticket.user is not None:
        return ticket.user.email or ticket.user.get_username()
    return _("guest %(email)s") % {"email": buyer_email(ticket)}


def credit_owner(ticket: Ticket) -> CreditOwnerKeys:
    """Whose credit events a decision on ``ticket`` writes (``credit_event_record``'s keywords):
    the member, or the guest by the order's email address."""
    if ticket.user_id is not None:
        return {"user": ticket.user, "email": ""}
    return {"user": None, "email": buyer_email(ticket)}


def buyer_url(ticket: Ticket) -> str:
    """The buyer's way to the ticket, for emails: the member's ticket page; for a guest, the
    signed link to the order (the ticket is in its after-sales block, after the guest's proof)."""
    if ticket.user_id is None and ticket.order is not None:
        return guest_link_url(order=ticket.order)
    return settings.SITE_URL + reverse("aftersales:ticket", args=[ticket.number])


def _buyer_recipients(ticket: Ticket) -> list[str]:
    email = buyer_email(ticket)
    return [email] if email else []


# --- attachments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    original_name: str
    content_type: str
    ext: str


def _safe_name(name: str, ext: str) -> str:
    base = os.path.basename(str(name or "")).strip() or "image"
    stem = os.path.splitext(base)[0][:80]
    try:
        stem = get_valid_filename(stem)
    except Exception:  # nothing valid left (e.g. only dots)
        stem = "image"
    return f"{stem}.{ext}"[:120]


def attachments_check(files) -> list[CheckedImage]:
    """Read and verify uploads before anything is stored; TicketError names the first bad one."""
    files = [f for f in (files or []) if f]
    if len(files) > MAX_ATTACHMENTS:
        raise TicketError(_("At most %(n)d images per message.") % {"n": MAX_ATTACHMENTS})
    limit = settings.TICKET_ATTACHMENT_MAX_BYTES
    checked = []
    for upload in files:
        name = getattr(upload, "name", "") or "image"
        size = getattr(upload, "size", None)
        if size is not None and size > limit:
            raise TicketError(
                _("%(name)s is too large: images up to %(mb).1f MB.") % {"name": name, "mb": limit / 1024 / 1024}
            )
        data = upload.read(limit + 1)
        if len(data) > limit:
            raise TicketError(
                _("%(name)s is too large: images up to %(mb).1f MB.") % {"name": name, "mb": limit / 1024 / 1024}
            )
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format
                image.verify()  # structure and checksums; raises on a truncated or fake file
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # decode the pixels too (verify() does not)
        except Exception:  # any decoder error, decompression bomb ...: not an image we take
            raise TicketError(_("%(name)s is not a PNG, JPEG or WebP image.") % {"name": name}) from None
        if fmt not in IMAGE_FORMATS:
            raise TicketError(_("%(name)s is not a PNG, JPEG or WebP image.") % {"name": name})
        content_type, ext = IMAGE_FORMATS[fmt]
        checked.append(CheckedImage(data=data, original_name=_safe_name(name, ext), content_type=content_type, ext=ext))
    return checked


def _store(images: list[CheckedImage], message: TicketMessage, written: list[Path]) -> None:
    root = Path(settings.PRIVATE_MEDIA_ROOT)
    now = timezone.now()
    for image in images:
        relative = Path("tickets") / f"{now:%Y}" / f"{now:%m}" / f"{secrets.token_urlsafe(18)}.{image.ext}"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:  # never overwrite
            fh.write(image.data)
        written.append(target)
        os.chmod(target, 0o640)
        TicketAttachment.objects.create(
            message=message,
            path=relative.as_posix(),
            original_name=image.original_name,
            content_type=image.content_type,
            size=len(image.data),
            sha256=hashlib.sha256(image.data).hexdigest(),
        )


def attachment_path(attachment: TicketAttachment) -> Path:
    """The file on disk, refusing anything that would resolve outside the private tickets folder."""
    root = (Path(settings.PRIVATE_MEDIA_ROOT) / "tickets").resolve()
    path = (Path(settings.PRIVATE_MEDIA_ROOT) / attachment.path).resolve()
    if root not in path.parents:
        raise NotFound
    return path


def _add_message(ticket, *, author, body, images, from_staff, internal=False, plan=False) -> TicketMessage:
    """Write a message and its files inside the caller's transaction; files are removed on rollback."""
    message = TicketMessage.objects.create(
        ticket=ticket, author=author, from_staff=from_staff, internal=internal, is_resolution_plan=plan, body=body
    )
    if images:
        written: list[Path] = []
        try:
            _store(images, message, written)
        except Exception:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    return message


# --- reads ---------------------------------------------------------------------------------


def tickets_for_user(user) -> QuerySet[Ticket]:
    return Ticket.objects.filter(user=user).select_related("order").order_by("-last_activity_at", "-id")


def staff_may_view(user) -> bool:
    """Staff who may see any ticket, its thread and images: what the ticket admin requires."""
    return staff_can_view(user, Ticket)


def tickets_for_guest_order(order: Order) -> QuerySet[Ticket]:
    """The guest's tickets on a guest order (its page lists them: a guest has no ticket list)."""
    if order.buyer_id is not None:
        return Ticket.objects.none()
    return Ticket.objects.filter(order=order, user__isnull=True).order_by("-last_activity_at", "-id")


def ticket_for_guest(*, order: Order, number: str, request=None) -> Ticket:
    """A ticket of the guest order ``order`` (whose proof the caller checked), or 404 and an audit
    entry: a member's ticket, or one of another order, does not exist here."""
    ticket = (
        Ticket.objects.select_related("order", "order_code", "user", "assignee")
        .filter(number=number, order_id=order.pk, order__buyer__isnull=True, user__isnull=True)
        .first()
    )
    if ticket is None:
        if Ticket.objects.filter(number=number).exists():
            audit_denied(action="ticket.view", request=request, target=number, detail=f"not a ticket of {order.number}")
        raise NotFound
    return ticket


def ticket_for_user(*, user, number: str, request=None) -> Ticket:
    """The user's own ticket (staff with the ticket admin's view permission: any ticket), or 404
    and an audit entry."""
    ticket = Ticket.objects.select_related("order", "order_code", "user", "assignee").filter(number=number).first()
    if ticket is None:
        raise NotFound
    if not is_buyer(ticket, user) and not staff_may_view(user):
        audit_denied(action="ticket.view", request=request, actor=user, target=number, detail="not the ticket's user")
        raise NotFound
    return ticket


def ticket_messages_for(ticket: Ticket, *, staff: bool) -> QuerySet[TicketMessage]:
    """The thread; the buyer's view never includes internal notes."""
    messages = ticket.messages.select_related("author").prefetch_related("attachments")
    return messages if staff else messages.filter(internal=False)


def _attachment(public_id) -> TicketAttachment:
    """The image with this public id and its ticket, or NotFound (a malformed id too)."""
    attachment = (
        TicketAttachment.objects.select_related("message__ticket").filter(public_id=public_id).first()
        if isinstance(public_id, uuid.UUID)
        else None
    )
    if attachment is None:
        raise NotFound
    return attachment


def attachment_for_guest(*, order: Order, public_id: uuid.UUID, request=None) -> TicketAttachment:
    """An image of a guest's ticket on ``order`` (whose proof the caller checked), not on an
    internal note; anything else 404 and an audit entry."""
    attachment = _attachment(public_id)
    message = attachment.message
    ticket = message.ticket
    if ticket.order_id != order.pk or ticket.user_id is not None or order.buyer_id is not None or message.internal:
        audit_denied(
            action="ticket.attachment",
            request=request,
            target=f"{ticket.number}/{public_id}",
            detail=f"not an image of a guest ticket of {order.number}",
        )
        raise NotFound
    return attachment


def attachment_for_user(*, user, public_id: uuid.UUID, request=None) -> TicketAttachment:
    """The image for the ticket's user (not on an internal note) or for staff who may view
    tickets; anyone else gets 404 (the same as for an id that does not exist) and an audit entry."""
    attachment = _attachment(public_id)
    message = attachment.message
    own = is_buyer(message.ticket, user) and not message.internal
    if not (own or staff_may_view(user)):
        audit_denied(
            action="ticket.attachment",
            request=request,
            actor=user,
            target=f"{message.ticket.number}/{public_id}",
            detail="not a party to the ticket",
        )
        raise NotFound
    return attachment


def in_arbitration(ticket: Ticket) -> bool:
    """The ticket went to a third party: its outcome is theirs, staff no longer reopen it."""
    return ArbitrationCase.objects.filter(ticket_id=ticket.pk).exists()


def _reopen_window_open(ticket: Ticket, now: datetime | None) -> bool:
    if ticket.status != TicketStatus.RESOLVED or ticket.resolved_at is None:
        return False
    return (now or timezone.now()) <= ticket.resolved_at + timedelta(days=settings.TICKET_REOPEN_DAYS)


def can_reopen(ticket: Ticket, *, now: datetime | None = None) -> bool:
    return _reopen_window_open(ticket, now) and not in_arbitration(ticket)


def _refuse_reopen(ticket: Ticket, *, now: datetime) -> None:
    """Raise the reason a buyer may not reopen this resolved ticket (nothing if they may)."""
    if in_arbitration(ticket):
        raise TicketError(
            _(
                "This dispute is with the arbitrator: their decision will be posted on this ticket. "
                "Please open a new ticket for anything else."
            )
        )
    if not _reopen_window_open(ticket, now):
        raise TicketError(_("This ticket was resolved too long ago to reopen. Please open a new ticket."))


def minute(moment: datetime) -> str:
    """A time as staff and buyers read it in texts and emails: local, to the minute."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def reopen_until(ticket: Ticket) -> datetime | None:
    if ticket.resolved_at is None:
        return None
    return ticket.resolved_at + timedelta(days=settings.TICKET_REOPEN_DAYS)


def sla_deadlines(kind: str, start: datetime) -> dict[str, datetime]:
    policy = SlaPolicy.objects.filter(kind=kind).first()
    hours = (
        {
            "first_response_hours": policy.first_response_hours,
            "warn_after_hours": policy.warn_after_hours,
            "resolution_hours": policy.resolution_hours,
        }
        if policy
        else DEFAULT_SLA
    )
    return {
        "first_response_due_at": start + timedelta(hours=hours["first_response_hours"]),
        "warn_at": start + timedelta(hours=hours["warn_after_hours"]),
        "resolution_due_at": start + timedelta(hours=hours["resolution_hours"]),
    }


# --- reply templates ---------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{(ticket|order|product|buyer|due)\}")


def reply_templates_for(ticket: Ticket) -> list[dict[str, str]]:
    """The canned replies offered on ``ticket`` (its kind's and the general ones, in use), with
    the ticket's facts filled in: {ticket}, {order}, {product}, {buyer}, {due}."""
    order = ticket.order
    facts = {
        "ticket": ticket.number,
        "order": order.number if order else "",
        "product": order.product_name if order else "",
        "buyer": (ticket.user.get_full_name() or ticket.user.email) if ticket.user is not None else buyer_email(ticket),
        "due": minute(ticket.first_response_due_at),
    }
    templates = ReplyTemplate.objects.filter(is_active=True).filter(Q(kind="") | Q(kind=ticket.kind))
    return [
        {"title": t.title, "body": PLACEHOLDER.sub(lambda m: facts[m.group(1)], t.body)}
        for t in templates.order_by("sort_order", "title", "id")
    ]


# --- emails --------------------------------------------------------------------------------


def _staff_recipients(ticket: Ticket, *, exclude=None) -> list[str]:
    """The assignee, or (unassigned) the after-sales group's active staff."""
    if ticket.assignee is not None:  # no query when there is none (assignee_id is None)
        users = [ticket.assignee]
    else:
        users = list(
            get_user_model().objects.filter(
                groups__name=settings.AFTERSALES_SUPERVISOR_GROUP, is_active=True, is_staff=True
            )
        )
    exclude_pk = getattr(exclude, "pk", None)
    return sorted({u.email for u in users if u.email and u.pk != exclude_pk})


def _email(kind: str, ticket_id: int, recipients: list[str]) -> None:
    if not recipients:
        return
    ticket = Ticket.objects.select_related("user", "order").get(pk=ticket_id)
    with translation.override(settings.LANGUAGE_CODE):
        to_staff = kind.startswith("staff_")
        url = (
            settings.SITE_URL + reverse("admin:aftersales_ticket_change", args=[ticket.pk])
            if to_staff
            else buyer_url(ticket)
        )
        subjects = {
            "buyer_opened": _("Ticket %(number)s received: we answer by %(due)s"),
            "buyer_reply": _("Ticket %(number)s: a new reply from our support team"),
            "buyer_resolved": _("Ticket %(number)s has been resolved"),
            "staff_opened": _("New ticket %(number)s: %(subject)s"),
            "staff_reply": _("Ticket %(number)s: the buyer replied"),
            "staff_note": _("Ticket %(number)s: a new internal note"),
            "staff_assigned": _("Ticket %(number)s is assigned to you"),
        }
        due = minute(ticket.first_response_due_at)
        subject = subjects[kind] % {"number": ticket.number, "subject": ticket.subject, "due": due}
        body = render_to_string(
            "aftersales/email/ticket.txt",
            {"ticket": ticket, "kind": kind, "url": url, "due": due, "guest": ticket.is_guest},
        )
    send_mail(subject, body, None, recipients)


def _email_on_commit(kind: str, ticket: Ticket, recipients: list[str]) -> None:
    ticket_id = ticket.pk

    def send():
        try:
            _email(kind, ticket_id, recipients)
        except Exception:  # the reply stands; a lost email must not undo it
            log.warning("ticket email %s for ticket %s failed", kind, ticket_id, exc_info=True)

    transaction.on_commit(send)


# --- services ------------------------------------------------------------------------------


def _locked(ticket: Ticket | int) -> Ticket:
    pk = ticket.pk if isinstance(ticket, Ticket) else ticket
    return Ticket.objects.select_for_update(of=("self",)).select_related("user", "order", "assignee").get(pk=pk)


def _clean_body(body: str, *, required: bool = True) -> str:
    body = (body or "").strip()
    if required and not body:
        raise TicketError(_("Please write a message."))
    if len(body) > 5000:
        raise TicketError(_("The message is too long (at most 5,000 characters)."))
    return body


def _resolve_order(user, order, order_code, request) -> tuple[Order | None, OrderCode | None]:
    def deny(target: str):
        audit_denied(action="ticket.open", request=request, actor=user, target=target, detail="not the user's order")
        raise Forbidden(_("That order is not yours."))

    if order is not None and not isinstance(order, Order):
        found = Order.objects.filter(number=str(order)).first()
        if found is None:
            raise NotFound
        order = found
    owner = getattr(user, "pk", None)  # None: the guest of a guest order
    if order is not None and order.buyer_id != owner:
        deny(order.number)
    if order_code is not None and not isinstance(order_code, OrderCode):
        try:
            found_code = OrderCode.objects.select_related("order").filter(pk=int(order_code)).first()
        except (TypeError, ValueError):
            found_code = None
        if found_code is None:
            raise NotFound
        order_code = found_code
    if order_code is not None:
        if order_code.order.buyer_id != owner:
            deny(f"code {order_code.pk}")
        if order is not None and order_code.order_id != order.pk:
            raise TicketError(_("That code does not belong to this order."))
        order = order or order_code.order
    return order, order_code


def ticket_open(
    *,
    user,
    kind: str,
    subject: str,
    body: str,
    order: Order | str | None = None,
    order_code: OrderCode | int | None = None,
    attachments=(),
    request=None,
    is_dispute: bool = False,
    priority: int | None = None,
) -> Ticket:
    """Open a ticket on the user's own order or code (else Forbidden and an audit entry).
    ``user`` None: the guest of the guest order ``order`` (or ``order_code``'s) opens it."""
    if kind not in Kind.values:
        raise TicketError(_("Choose what the problem is."))
    subject = (subject or "").strip()
    if not subject:
        raise TicketError(_("Please give your ticket a short subject."))
    if len(subject) > 120:
        raise TicketError(_("The subject is too long (at most 120 characters)."))
    body = _clean_body(body)
    order, order_code = _resolve_order(user, order, order_code, request)
    if (user is None or kind in (Kind.NOT_RECEIVED, Kind.INVALID)) and order is None:
        raise TicketError(_("Choose the order this is about."))
    images = attachments_check(attachments)
    now = timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.create(
            user=user,
            order=order,
            order_code=order_code,
            kind=kind,
            subject=subject,
            is_dispute=is_dispute,
            priority=Ticket.Priority.NORMAL if priority is None else priority,
            last_activity_at=now,
            **sla_deadlines(kind, now),
        )
        # The ticket is created open: its first history row, as TICKET_FLOW.apply writes the later ones.
        TicketStatusChange.objects.create(ticket=ticket, from_status="", to_status=TicketStatus.OPEN, actor=user)
        _add_message(ticket, author=user, body=body, images=images, from_staff=False)
        _email_on_commit("buyer_opened", ticket, _buyer_recipients(ticket))
        _email_on_commit("staff_opened", ticket, _staff_recipients(ticket))
    return ticket


def ticket_reply(
    *,
    ticket: Ticket,
    author,
    body: str,
    attachments=(),
    staff: bool = False,
    internal: bool = False,
    resolution_plan: bool = False,
    request_info: bool = False,
) -> TicketMessage:
    """Add a message. Buyer -> awaiting staff; staff -> awaiting buyer. Only a staff reply marked as
    the resolution plan stops the first-response clock; internal notes change nothing the buyer sees.
    ``author`` None (not staff): the guest of the ticket's guest order."""
    body = _clean_body(body)
    if staff and not staff_has_perm(author, CHANGE_PERMISSION):
        raise Forbidden
    if not staff and (internal or resolution_plan or request_info):
        raise TicketError(_("Only staff can post notes, plans or requests for information."))
    if internal and (resolution_plan or request_info):
        raise TicketError(_("An internal note is not shown to the buyer: it cannot be the plan or a question."))
    images = attachments_check(attachments)
    now = timezone.now()
    with transaction.atomic():
        ticket = _locked(ticket)
        if not staff and not is_buyer(ticket, author):
            raise Forbidden
        if ticket.status == TicketStatus.CLOSED:
            raise TicketError(_("This ticket is closed. Please open a new ticket."))
        if ticket.status == TicketStatus.RESOLVED and not staff and not internal:
            _refuse_reopen(ticket, now=now)
            _reopen(ticket, actor=author)
        message = _add_message(
            ticket, author=author, body=body, images=images, from_staff=staff, internal=internal, plan=resolution_plan
        )
        if internal:
            _email_on_commit("staff_note", ticket, _staff_recipients(ticket, exclude=author))
            return message
        update: dict[str, object] = {"last_activity_at": now}
        if staff:
            if resolution_plan and ticket.first_responded_at is None:
                update["first_responded_at"] = now  # the SLA clock stops here
            if ticket.assignee_id is None:
                update["assignee"] = author
            note = _("asked the buyer for more information") if request_info else ""
            moved = ticket.status in OPEN_STATUSES and TICKET_FLOW.apply(
                ticket, TicketStatus.AWAITING_BUYER, actor=author, note=note, update=update
            )
            if not moved:  # already awaiting the buyer, or a word after resolution: the status stays
                _save(ticket, update)
            _email_on_commit("buyer_reply", ticket, _buyer_recipients(ticket))
        else:
            if not TICKET_FLOW.apply(ticket, TicketStatus.AWAITING_STAFF, actor=author, update=update):
                _save(ticket, update)  # a second buyer message in a row: the time still moves
            _email_on_commit("staff_reply", ticket, _staff_recipients(ticket))
    return message


def _save(ticket: Ticket, fields: dict[str, object]) -> None:
    for name, value in fields.items():
        setattr(ticket, name, value)
    ticket.save(update_fields=list(fields))


def ticket_resolve(*, ticket: Ticket, staff, note: str) -> Ticket:
    """Staff resolve with a note the buyer sees. Resolving also counts as the first response."""
    if not staff_has_perm(staff, CHANGE_PERMISSION):
        raise Forbidden
    note = _clean_body(note)
    now = timezone.now()
    with transaction.atomic():
        ticket = _locked(ticket)
        if ticket.status not in OPEN_STATUSES:
            raise TicketError(
                _("Only an open ticket can be resolved (this one is %(status)s).")
                % {"status": ticket.get_status_display()}
            )
        _add_message(
            ticket, author=staff, body=note, images=[], from_staff=True, plan=ticket.first_responded_at is None
        )
        update: dict[str, object] = {"last_activity_at": now}
        if ticket.first_responded_at is None:
            update["first_responded_at"] = now
        if ticket.assignee_id is None:
            update["assignee"] = staff
        TICKET_FLOW.apply(ticket, TicketStatus.RESOLVED, actor=staff, note=note, update=update)
        _email_on_commit("buyer_resolved", ticket, _buyer_recipients(ticket))
    return ticket


def ticket_close(*, ticket: Ticket, actor, reason: str = "") -> Ticket:
    """The buyer closes their own ticket (``actor`` None: the guest of a guest order's ticket);
    staff close any ticket, with a reason."""
    reason = (reason or "").strip()
    with transaction.atomic():
        ticket = _locked(ticket)
        own = is_buyer(ticket, actor)
        if not own and not staff_has_perm(actor, CHANGE_PERMISSION):
            raise Forbidden
        if not own and not reason:
            raise TicketError(_("Give a reason for closing the ticket."))
        if ticket.status == TicketStatus.CLOSED:
            return ticket
        TICKET_FLOW.apply(
            ticket,
            TicketStatus.CLOSED,
            actor=actor,
            note=reason or _("closed by the buyer"),
            update={"last_activity_at": timezone.now()},
        )
    return ticket


def _reopen(ticket: Ticket, *, actor) -> None:
    TICKET_FLOW.apply(
        ticket,
        TicketStatus.AWAITING_STAFF,
        actor=actor,
        note=_("reopened by the buyer"),
        update={
            "reopened_count": ticket.reopened_count + 1,
            "resolved_at": None,
            "last_activity_at": timezone.now(),
        },
    )


def ticket_reopen(*, ticket: Ticket, user, body: str = "") -> Ticket:
    """The buyer reopens a resolved ticket within TICKET_REOPEN_DAYS of its resolution."""
    body = _clean_body(body, required=False)
    with transaction.atomic():
        ticket = _locked(ticket)
        if not is_buyer(ticket, user):
            raise Forbidden
        if ticket.status != TicketStatus.RESOLVED:
            raise TicketError(_("Only a resolved ticket can be reopened."))
        _refuse_reopen(ticket, now=timezone.now())
        _reopen(ticket, actor=user)
        if body:
            _add_message(ticket, author=user, body=body, images=[], from_staff=False)
        _email_on_commit("staff_reply", ticket, _staff_recipients(ticket))
    return ticket


def ticket_assign(*, ticket: Ticket, assignee, actor) -> Ticket:
    """Give the ticket to a staff member (who gets an email unless they took it themselves)."""
    if not staff_has_perm(actor, CHANGE_PERMISSION):
        raise Forbidden
    if assignee is not None and not (assignee.is_staff and assignee.is_active):
        raise TicketError(_("Tickets can only be assigned to active staff."))
    with transaction.atomic():
        ticket = _locked(ticket)
        if ticket.assignee_id == getattr(assignee, "pk", None):
            return ticket
        ticket.assignee = assignee
        ticket.save(update_fields=["assignee"])
        if assignee is not None and assignee.pk != actor.pk and assignee.email:
            _email_on_commit("staff_assigned", ticket, [assignee.email])
    return ticket


def staff_users() -> QuerySet:
    return get_user_model().objects.filter(is_staff=True, is_active=True).order_by("email")


def open_ticket_filter() -> Q:
    return Q(status__in=OPEN_STATUSES)
