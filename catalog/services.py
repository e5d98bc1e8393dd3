"""Catalogue and stock services: the only code that changes card codes."""

import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from marketplace import crypto
from marketplace.context_processors import site
from marketplace.errors import Conflict, Forbidden, ServiceError
from marketplace.money import quantize
from marketplace.text import email_normalise

from . import importing, selectors
from .models import (
    BATCH_FLOW,
    CODE_FLOW,
    CardCode,
    Product,
    RestockSubscription,
    StaffReveal,
    StockBatch,
    Supplier,
)

log = logging.getLogger(__name__)
Status = CardCode.Status
CHUNK = 2000


class CatalogError(ServiceError, ValueError):
    """A catalog request refused as asked (an empty import, a code that is not sold). Also a
    ValueError, as these refusals were: the import form and its callers catch that."""

    code = "catalog_refused"


class OutOfStock(Conflict):
    code = "out_of_stock"

    def __init__(self, *, requested: int, available: int, message: str | None = None):
        if message is None:
            message = (
                _("Only %(available)d left in stock, you asked for %(requested)d.")
                % {"available": available, "requested": requested}
                if available
                else _("Sold out: no codes left for this product.")
            )
        super().__init__(message)
        self.requested, self.available = requested, available


# --- Reservation, release and sale (called by orders inside its transactions) -----------


def claim_sql(vendor: str) -> str:
    """The claim: one statement that picks, locks and reserves codes, oldest batch first.

    ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) lets concurrent buyers pass each other without
    waiting or sharing a code. The ORDER BY (batch, id) is served only by the partial index of
    available codes, so the plan cannot walk past codes already sold. SQLite has no row locks:
    its IMMEDIATE transactions serialise writers instead.
    """
    table = CardCode._meta.db_table
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    return (
        f"UPDATE {table} SET status = %s, updated_at = %s WHERE id IN ("  # noqa: S608 (no user input)
        f"SELECT id FROM {table} WHERE product_id = %s AND status = %s ORDER BY batch_id, id LIMIT %s{lock}"
        ") RETURNING id"
    )


def stock_reserve(*, product_id: int, quantity: int) -> list[int]:
    """Claim ``quantity`` available codes for the caller's transaction (all or none)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("stock_reserve must run inside the order's transaction")
    CODE_FLOW.require(Status.AVAILABLE, Status.RESERVED)  # the claim's move, in raw SQL
    with connection.cursor() as cursor:
        cursor.execute(
            claim_sql(connection.vendor),
            [Status.RESERVED, timezone.now(), product_id, Status.AVAILABLE, quantity],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    if len(ids) < quantity:
        # Too few: undo the partial claim (the caller's transaction may go on, e.g. a late payment).
        stock_release(code_ids=ids)
        raise OutOfStock(requested=quantity, available=len(ids))
    return ids


def stock_claim_sql(*, product_id: int, quantity: int) -> tuple[str, list]:
    """``stock_reserve``'s claim as a statement (and its parameters) for a caller that records
    the codes in the same round trip: ``WITH claimed AS (<this>) INSERT ... SELECT ... FROM
    claimed`` (PostgreSQL's data-modifying WITH; ``orders.services.orders.order_place``). The
    claim is the same statement, with the same plan. Unlike ``stock_reserve`` nothing is
    released here: when ``stock_claim_check`` finds too few codes, the caller's transaction
    must be rolled back (its own rows were written with the partial claim)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block or connection.vendor != "postgresql":
        raise RuntimeError("stock_claim_sql is for PostgreSQL, inside the order's transaction")
    CODE_FLOW.require(Status.AVAILABLE, Status.RESERVED)  # the claim's move, in raw SQL
    return claim_sql(connection.vendor), [
        Status.RESERVED.value,
        timezone.now(),
        product_id,
        Status.AVAILABLE.value,
        quantity,
    ]


def stock_claim_check(*, code_ids: Sequence[int], quantity: int) -> list[int]:
    """The codes a ``stock_claim_sql`` claim took, sorted, or ``OutOfStock`` when they are too
    few (all or none: the caller rolls its transaction back)."""
    ids = sorted(code_ids)
    if len(ids) < quantity:
        raise OutOfStock(requested=quantity, available=len(ids))
    return ids


def stock_release(*, code_ids: Sequence[int]) -> int:
    """Return reserved codes to stock (an unpaid order expired or was cancelled)."""
    return CODE_FLOW.move_all(
        CardCode.objects.filter(id__in=code_ids), Status.RESERVED, Status.AVAILABLE, updated_at=timezone.now()
    )


def stock_mark_sold(*, code_ids: Sequence[int] | QuerySet, expected: int) -> None:
    """Reserved -> sold, all or nothing: a code is sold exactly once.

    ``code_ids`` may be a queryset of ids (one statement with a subquery).
    """
    updated = CODE_FLOW.move_all(
        CardCode.objects.filter(id__in=code_ids), Status.RESERVED, Status.SOLD, updated_at=timezone.now()
    )
    if updated != expected:
        raise RuntimeError(f"expected {expected} reserved codes, {updated} were reserved")


@functools.lru_cache(maxsize=16)  # one text per subquery shape
def sale_sql(codes: str) -> str:
    """The sale of reserved codes (``stock_sell``; ``codes`` is the SQL of a subquery of their
    ids): sold, with what each cost and from whom (PostgreSQL)."""
    code, batch, supplier = CardCode._meta.db_table, StockBatch._meta.db_table, Supplier._meta.db_table
    return (
        f"UPDATE {code} SET status = %s, updated_at = %s FROM {batch} JOIN {supplier}"  # noqa: S608 (no user input)
        f" ON {supplier}.id = {batch}.supplier_id WHERE {code}.id IN ({codes}) AND {code}.status = %s"
        f" AND {batch}.id = {code}.batch_id RETURNING {batch}.supplier_id, {supplier}.name, {batch}.cost_price"
    )


def stock_sell(*, code_ids: QuerySet | tuple[str, Sequence], expected: int) -> list[dict]:
    """``stock_mark_sold`` that also returns what the sold codes cost, per supplier, as
    ``catalog.selectors.cost_by_supplier`` would read it after: [{"supplier_id",
    "supplier_name", "cost"}] by supplier. ``code_ids`` is a queryset of ids, or on PostgreSQL
    the (SQL, parameters) of a subquery of ids compiled once by the caller
    (``marketplace.prepared.Prepared.sql``). On PostgreSQL one ``UPDATE ... FROM ...
    RETURNING`` (SQLite cannot return the joined rows: two statements)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        if not isinstance(code_ids, QuerySet):
            raise TypeError("stock_sell takes a queryset of ids on other databases than PostgreSQL")
        stock_mark_sold(code_ids=code_ids, expected=expected)
        return selectors.cost_by_supplier(code_ids)
    CODE_FLOW.require(Status.RESERVED, Status.SOLD)  # the sale's move, in raw SQL
    subquery, params = code_ids.query.sql_with_params() if isinstance(code_ids, QuerySet) else code_ids
    with connection.cursor() as cursor:
        cursor.execute(
            sale_sql(subquery),
            [Status.SOLD, timezone.now(), *params, Status.RESERVED],
        )
        rows = cursor.fetchall()
    if len(rows) != expected:
        raise RuntimeError(f"expected {expected} reserved codes, {len(rows)} were reserved")
    costs: dict[int, dict] = {}
    for supplier_id, name, cost in rows:
        entry = costs.setdefault(supplier_id, {"supplier_id": supplier_id, "supplier_name": name, "cost": Decimal(0)})
        entry["cost"] += cost
    return [costs[pk] for pk in sorted(costs)]


def stock_return(*, code_ids: Sequence[int]) -> int:
    """Sold codes back to available: only for codes proven never revealed (the 7-day
    no-reason refund, which has released them from their order first). One statement; codes
    not sold are left alone. Returns how many went back to stock."""
    return CODE_FLOW.move_all(
        CardCode.objects.filter(id__in=list(code_ids)), Status.SOLD, Status.AVAILABLE, updated_at=timezone.now()
    )


@sensitive_variables("number")
def code_plaintext(code: CardCode) -> tuple[str, str]:
    """(card number, secret) of a code, for its owner's order page and audited staff reveals."""
    number = crypto.decrypt(code.card_number_enc) if code.card_number_enc else ""
    return number, crypto.decrypt(code.secret_enc)


def code_reveal_for_staff(*, code_id: int, user, ip: str | None, user_agent: str, reason: str) -> tuple[str, str]:
    if not user.has_perm("catalog.reveal_cardcode"):
        raise Forbidden
    reason = (reason or "").strip()
    if not reason:
        raise CatalogError(_("Give a reason for revealing this code."))
    code = CardCode.objects.get(pk=code_id)
    StaffReveal.objects.create(code=code, user=user, ip=ip, user_agent=user_agent[:300], reason=reason[:200])
    log.info("staff reveal: code=%s user=%s", code.pk, user.pk)
    return code_plaintext(code)


# --- Import ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRequest:
    product: Product
    supplier: Supplier
    cost_price: Decimal
    text: str
    source_name: str
    csv_format: bool


def batch_create(*, request: ImportRequest, user, run_now: bool = False) -> StockBatch:
    """Record an import and queue it (or run it at once: demo data, tests).

    The list is stored encrypted until the import has run, then emptied.
    """
    if not user.has_perm("catalog.import_stock"):
        raise Forbidden
    line_count = len(importing.split_lines(request.text))
    if line_count > settings.STOCK_IMPORT_MAX_LINES:
        raise CatalogError(
            _("At most %(max)d lines per import; this list has %(n)d.")
            % {"max": settings.STOCK_IMPORT_MAX_LINES, "n": line_count}
        )
    if not request.text.strip():
        raise CatalogError(_("The list is empty."))
    from .tasks import import_batch

    with transaction.atomic():
        batch = StockBatch.objects.create(
            product=request.product,
            supplier=request.supplier,
            cost_price=quantize(request.cost_price),
            created_by=user,
            source_name=(request.source_name or "")[:200],
            total_lines=line_count,
            payload=crypto.encrypt(("csv\n" if request.csv_format else "txt\n") + request.text),
        )
        if not run_now:
            # Celery makes a shared task a DjangoTask under Django; celery-types types it as Task.
            import_batch.delay_on_commit(batch.pk)  # type: ignore[attr-defined]
    if run_now:
        batch_import_run(batch_id=batch.pk)
        batch.refresh_from_db()
    return batch


def _finish(batch_id: int, status: str, **fields) -> None:
    BATCH_FLOW.move_all(
        StockBatch.objects.filter(pk=batch_id),
        StockBatch.Status.RUNNING,
        status,
        finished_at=timezone.now(),
        payload="",
        **fields,
    )


@sensitive_variables("text", "lines")
def batch_import_run(*, batch_id: int) -> str:
    """Import a queued batch. Safe to run twice and after a worker was killed mid-way.

    Codes are written in chunks as ``importing`` (so progress shows in admin), then made
    available in one statement: stock sees all of the batch or none of it. Malformed lines
    reject the whole batch; duplicates (already in stock, or twice in the list) are skipped
    and reported by line number.
    """
    row = StockBatch.objects.filter(pk=batch_id)
    claimed = BATCH_FLOW.move_all(row, StockBatch.Status.QUEUED, StockBatch.Status.RUNNING, note="import started")
    if not claimed:  # or run again after a worker was killed mid-way
        claimed = row.filter(status=StockBatch.Status.RUNNING).exists()
    if not claimed:
        return "nothing to do"
    batch = StockBatch.objects.get(pk=batch_id)
    # A previous run killed mid-way left importing rows behind: start again from nothing.
    CardCode.objects.filter(product_id=batch.product_id, batch_id=batch.pk, status=Status.IMPORTING).delete()
    kind, _sep, text = crypto.decrypt(batch.payload).partition("\n")
    lines, problems = importing.parse(text, csv_format=(kind == "csv"))
    if problems:
        _finish(
            batch.pk,
            StockBatch.Status.REJECTED,
            malformed_count=len(problems),
            processed_lines=batch.total_lines,
            report=[p.as_dict() for p in problems[:1000]],
            error=_("%(n)d malformed lines: fix them and import the list again. Nothing was imported.")
            % {"n": len(problems)},
        )
        return "rejected"
    try:
        imported, duplicates = _write_codes(batch, lines)
    except Exception as exc:
        CardCode.objects.filter(product_id=batch.product_id, batch_id=batch.pk, status=Status.IMPORTING).delete()
        log.exception("stock import %s failed", batch.pk)
        _finish(batch.pk, StockBatch.Status.FAILED, error=f"{type(exc).__name__}: nothing was imported")
        return "failed"
    with transaction.atomic():
        CODE_FLOW.move_all(
            CardCode.objects.filter(product_id=batch.product_id, batch_id=batch.pk), Status.IMPORTING, Status.AVAILABLE
        )
        _finish(
            batch.pk,
            StockBatch.Status.DONE,
            processed_lines=batch.total_lines,
            imported_count=imported,
            duplicate_count=len(duplicates),
            report=[p.as_dict() for p in duplicates[:1000]],
        )
        if imported:
            restock_alerts_queue(product_id=batch.product_id, batch_id=batch.pk)
    return "done"


def _write_codes(batch: StockBatch, lines: list[importing.Line]) -> tuple[int, list[importing.Problem]]:
    seen: set[str] = set()
    duplicates: list[importing.Problem] = []
    imported = 0
    for start in range(0, len(lines), CHUNK):
        chunk = lines[start : start + CHUNK]
        digests = [crypto.keyed_digest(line.secret) for line in chunk]
        existing = set(
            CardCode.objects.filter(product_id=batch.product_id, secret_hash__in=digests).values_list(
                "secret_hash", flat=True
            )
        )
        rows = []
        for line, digest in zip(chunk, digests, strict=True):
            if digest in existing or digest in seen:
                problem = _("duplicate: already in stock or earlier in the list")
                duplicates.append(importing.Problem(line.number, problem))
                continue
            seen.add(digest)
            rows.append(
                CardCode(
                    product_id=batch.product_id,
                    batch_id=batch.pk,
                    card_number_enc=crypto.encrypt(line.card_number) if line.card_number else "",
                    secret_enc=crypto.encrypt(line.secret),
                    secret_hash=digest,
                    status=Status.IMPORTING,
                )
            )
        try:
            with transaction.atomic():
                CardCode.objects.bulk_create(rows, batch_size=CHUNK)
        except IntegrityError as exc:  # another import added the same code meanwhile
            raise RuntimeError("a code in this list was imported by another batch at the same time") from exc
        imported += len(rows)
        StockBatch.objects.filter(pk=batch.pk).update(
            processed_lines=min(batch.total_lines, chunk[-1].number), imported_count=imported
        )
    return imported, duplicates


@sensitive_variables("codes")
def batch_receive(
    *,
    product_id: int,
    supplier_id: int,
    cost_price: Decimal,
    source_name: str,
    codes: Sequence[tuple[str, str]],
    for_order: bool,
) -> list[int]:
    """Codes bought from a supplier's system (issue 16), as one batch, done at once: encrypted
    and digested like imported ones (so the reveal log, refunds and reissue treat them alike).
    ``codes`` are (card number, secret). ``for_order``: reserved for the order that bought them
    (the caller attaches and sells them in its transaction); otherwise available stock (a late
    delivery for an order already refunded). Returns the new codes' ids. A code already in
    stock for the product raises ``CatalogError`` (nothing is written)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("batch_receive must run inside the caller's transaction")
    if not codes:
        raise CatalogError(_("The supplier returned no codes."))
    now = timezone.now()
    batch = StockBatch.objects.create(
        product_id=product_id,
        supplier_id=supplier_id,
        cost_price=quantize(cost_price),
        created_by=None,
        source_name=source_name[:200],
        status=StockBatch.Status.DONE,
        finished_at=now,
        total_lines=len(codes),
        processed_lines=len(codes),
        imported_count=len(codes),
    )
    status = Status.RESERVED if for_order else Status.AVAILABLE
    rows = [
        CardCode(
            product_id=product_id,
            batch_id=batch.pk,
            card_number_enc=crypto.encrypt(number) if number else "",
            secret_enc=crypto.encrypt(secret),
            secret_hash=crypto.keyed_digest(secret),
            status=status,
        )
        for number, secret in codes
    ]
    try:
        with transaction.atomic():
            created = CardCode.objects.bulk_create(rows)
    except IntegrityError as exc:
        raise CatalogError(_("The supplier returned a code that is already in stock.")) from exc
    if not for_order:
        restock_alerts_queue(product_id=product_id, batch_id=batch.pk)
    return sorted(c.pk for c in created)


def code_mark_defective(*, code_id: int, note: str) -> None:
    """A sold code confirmed invalid: defective, never sold again, owed back by its supplier
    (in the caller's transaction). Raises ``CatalogError`` if the code is not sold."""
    updated = CODE_FLOW.move_all(
        CardCode.objects.filter(pk=code_id),
        Status.SOLD,
        Status.DEFECTIVE,
        defective_at=timezone.now(),
        defect_note=(note or "")[:300],
        updated_at=timezone.now(),
    )
    if updated != 1:
        raise CatalogError(_("Only a sold code can be marked defective."))


# --- Restock alerts ("notify me when it is back") ---------------------------------------------

RESTOCK_CONFIRM_SALT = selectors.RESTOCK_CONFIRM_SALT


class RestockError(CatalogError):
    code = "restock_refused"


def restock_confirm_token(subscription: RestockSubscription) -> str:
    """The signed, timestamped key of a guest's confirmation link (read by
    ``selectors.restock_subscription_from_confirm_link``)."""
    return signing.TimestampSigner(salt=RESTOCK_CONFIRM_SALT).sign(subscription.token)


def _live(product_id: int, email: str) -> QuerySet[RestockSubscription]:
    return RestockSubscription.objects.filter(
        product_id=product_id, email=email, notified_at__isnull=True, unsubscribed_at__isnull=True
    )


def restock_subscribe(
    *, product: Product, user=None, email: str = "", ip: str | None = None, page_path: str = ""
) -> tuple[RestockSubscription, str]:
    """Subscribe to ``product``'s next restock: a member (``user``, confirmed at once, their
    account's address) or a guest's ``email`` (a confirmation link is emailed; unconfirmed
    subscriptions are never alerted). Asking again changes nothing but resends a guest's link.

    Returns the live subscription and what happened: "subscribed" (new and confirmed),
    "already" (confirmed before) or "confirm_sent" (a guest's link emailed). ``RestockError``
    for a product in stock or an address that is not one.
    """
    member = user if user is not None and user.is_authenticated else None
    if selectors.stock_count(product.pk) > 0:
        raise RestockError(_("This product is in stock: you can buy it now."))
    email = email_normalise(member.email if member is not None else email)
    try:
        validate_email(email)
    except ValidationError:
        raise RestockError(_("Enter a valid email address.")) from None
    now = timezone.now()
    with transaction.atomic():
        sub = _live(product.pk, email).select_for_update().first()
        created = sub is None
        if sub is None:
            try:
                with transaction.atomic():
                    sub = RestockSubscription.objects.create(
                        product=product,
                        user=member,
                        email=email,
                        token=secrets.token_urlsafe(32),
                        confirmed_at=now if member is not None else None,
                        ip=ip or None,
                        page_path=page_path[:200],
                    )
            except IntegrityError:  # the same address subscribed at the same moment
                sub = _live(product.pk, email).select_for_update().get()
                created = False
        if member is not None and (sub.confirmed_at is None or sub.user_id is None):
            # A member asks for an address they once gave as a guest: theirs, so confirmed.
            sub.user, sub.confirmed_at = member, sub.confirmed_at or now
            sub.save(update_fields=["user", "confirmed_at"])
        if sub.confirmed_at is not None:
            return sub, "subscribed" if created else "already"
        pk = sub.pk
        transaction.on_commit(lambda: _email_restock_confirm(subscription_id=pk))
    return sub, "confirm_sent"


def restock_confirm(*, subscription: RestockSubscription) -> bool:
    """A guest opened their confirmation link and confirmed: True if this confirmed it."""
    return bool(
        _live(subscription.product_id, subscription.email)
        .filter(pk=subscription.pk, confirmed_at__isnull=True)
        .update(confirmed_at=timezone.now())
    )


def restock_unsubscribe(*, subscription: RestockSubscription) -> bool:
    """The unsubscribe link: no alert for this subscription any more. True if this ended it."""
    return bool(
        RestockSubscription.objects.filter(
            pk=subscription.pk, notified_at__isnull=True, unsubscribed_at__isnull=True
        ).update(unsubscribed_at=timezone.now())
    )


def _site_url(path: str) -> str:
    return settings.SITE_URL + path


def _unsubscribe_url(sub: RestockSubscription) -> str:
    return _site_url(reverse("catalog:restock_unsubscribe", args=[sub.token]))


def _send(*, to: str, subject: str, template: str, context: dict, headers: dict | None = None) -> None:
    """One email as text and HTML (templates/catalog/email/<template>.txt and .html)."""
    context = {**site(None), "SITE_URL": settings.SITE_URL, **context}
    text = render_to_string(f"catalog/email/{template}.txt", context)
    html = render_to_string(f"catalog/email/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, None, [to], headers=headers or {})
    message.attach_alternative(html, "text/html")
    message.send()


def _email_restock_confirm(*, subscription_id: int) -> None:
    sub = RestockSubscription.objects.select_related("product").filter(pk=subscription_id).first()
    if sub is None or sub.confirmed_at is not None or not sub.is_live:
        return
    url = _site_url(reverse("catalog:restock_confirm", args=[restock_confirm_token(sub)]))
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Confirm your restock alert for %(product)s") % {"product": sub.product.name}
        _send(
            to=sub.email,
            subject=subject,
            template="restock_confirm",
            context={"product": sub.product, "url": url, "days": settings.RESTOCK_CONFIRM_DAYS},
        )


def restock_email_alert(subscription: RestockSubscription) -> None:
    """The alert itself: the product is back, with a one-click unsubscribe link (and the
    List-Unsubscribe headers of RFC 2369 and RFC 8058, which mail apps show as a button)."""
    product = subscription.product
    unsubscribe = _unsubscribe_url(subscription)
    page = _site_url(subscription.page_path or product.get_absolute_url())
    with translation.override(settings.LANGUAGE_CODE):
        _send(
            to=subscription.email,
            subject=_("Back in stock: %(product)s") % {"product": product.name},
            template="restock_alert",
            context={"product": product, "url": page, "unsubscribe_url": unsubscribe},
            headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )


def restock_alerts_queue(*, product_id: int, batch_id: int | None) -> None:
    """After new stock of ``product_id`` is committed: queue the sending run if anyone waits."""
    if not selectors.restock_due(product_id).exists():
        return
    from marketplace.celery import publish

    from .tasks import restock_notify

    transaction.on_commit(lambda: publish(restock_notify, product_id, batch_id))


def restock_notify_run(
    *,
    product_id: int,
    run_id: str,
    batch_id: int | None = None,
    send: Callable[[RestockSubscription], None] | None = None,
) -> tuple[int, bool]:
    """Email up to RESTOCK_ALERT_BATCH confirmed subscribers of ``product_id`` that it is back;
    returns (emails sent, whether more are waiting for another run).

    Each row goes through three steps, each committed on its own:
      1. claim: one transaction takes the batch's rows (``FOR UPDATE SKIP LOCKED``, so two runs
         never take the same row) and writes ``claim = run_id, claimed_at = now``;
      2. send the email;
      3. mark: ``notified_at`` set by a conditional UPDATE (still ours, not yet notified).
    A run killed mid-way (the worker SIGKILLed, the task retried or its message redelivered
    under the same task id, which is ``run_id``) finds its own claimed rows again and sends
    only those not marked; rows claimed by another run are taken over only once the claim is
    RESTOCK_ALERT_CLAIM_MINUTES old (that run is dead, not slow). Nobody is skipped: a claimed
    row stays due until marked.

    At-least-once, not at-most-once, for the one email in flight at the moment of a kill (sent
    by the mail server, the mark not yet committed): that subscriber may get the alert twice,
    while marking before sending would lose it for good, unseen by anyone. Everyone else gets
    it exactly once. A lost "back in stock" email is a sale missed and a customer who thinks
    the shop ignored them; a rare duplicate is harmless. tests/test_restock_alerts_worker.py
    SIGKILLs a real worker between two emails (everyone exactly once) and with one email in
    flight (that one subscriber twice, nobody else); tests/test_restock_alerts.py simulates it.
    """
    if not selectors.products_on_sale().filter(pk=product_id).exists() or not selectors.stock_count(product_id):
        return 0, False  # off sale or sold out again: the subscriptions wait for the next restock
    now = timezone.now()
    stale = now - timedelta(minutes=settings.RESTOCK_ALERT_CLAIM_MINUTES)
    due = selectors.restock_due(product_id)
    claimable = due.filter(Q(claimed_at__isnull=True) | Q(claim=run_id) | Q(claimed_at__lt=stale))
    with transaction.atomic():
        ids = list(
            claimable.order_by("pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[: settings.RESTOCK_ALERT_BATCH]
        )
        RestockSubscription.objects.filter(pk__in=ids).update(claim=run_id, claimed_at=now)
    send = send or restock_email_alert
    sent = 0
    rows = due.filter(pk__in=ids, claim=run_id).select_related("product").order_by("pk")
    for sub in rows:
        send(sub)
        RestockSubscription.objects.filter(pk=sub.pk, claim=run_id, notified_at__isnull=True).update(
            notified_at=timezone.now(), notified_batch_id=batch_id
        )
        sent += 1
    log.info("restock alerts: product=%s run=%s sent=%s", product_id, run_id, sent)
    return sent, claimable.exists()
