"""Catalogue and stock services: the only code that changes card codes."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from marketplace import crypto
from marketplace.errors import Conflict, Forbidden, ServiceError
from marketplace.money import quantize

from . import importing
from .models import BATCH_FLOW, CODE_FLOW, CardCode, Product, StaffReveal, StockBatch, Supplier

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


def rotate_code_keys(*, chunk: int = 1000) -> int:
    """Re-encrypt every secret under the primary key (after a new key was put in front)."""
    count = 0
    last = 0
    while True:
        codes = list(CardCode.objects.filter(pk__gt=last).order_by("pk")[:chunk])
        if not codes:
            return count
        with transaction.atomic():
            for code in codes:
                code.secret_enc = crypto.rotate(code.secret_enc)
                if code.card_number_enc:
                    code.card_number_enc = crypto.rotate(code.card_number_enc)
            CardCode.objects.bulk_update(codes, ["secret_enc", "card_number_enc"])
        count += len(codes)
        last = codes[-1].pk


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
