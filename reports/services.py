"""Generate a report: read its sections (``reports.sections``), render the PDF and the XLSX,
store both with the totals. Once per kind and period: a report that is ready is returned as it
is; one that failed (or whose run died) is generated again in the same row."""

import logging
from datetime import date, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import user_display
from compliance.models import Qualification
from marketplace.dbrouter import replica_reads

from .models import REPORT_FLOW, Report
from .periods import Period
from .render import Document, pdf, xlsx
from .sections import SECTIONS

log = logging.getLogger(__name__)


def _company() -> tuple[str, str]:
    """The platform's company and credit code, from its business licence on record (the shown one
    first, else the latest)."""
    licence = (
        Qualification.objects.filter(kind=Qualification.Kind.BUSINESS_LICENCE)
        .order_by("-is_shown", "-pk")
        .values_list("company_name", "number")
        .first()
    )
    return licence if licence is not None else ("", "")


def _row(kind: str, start: date, end: date) -> Report:
    """The report's row, created if it is not there yet (two runs at once: one creates it)."""
    try:
        with transaction.atomic():
            report, _created = Report.objects.get_or_create(kind=kind, period_start=start, period_end=end)
    except IntegrityError:
        report = Report.objects.get(kind=kind, period_start=start, period_end=end)
    return report


def report_generate(*, kind: str, start: date, end: date, generated_by=None, now: datetime | None = None) -> Report:
    """The report of ``kind`` for the days ``start`` to ``end`` (included), generated once.

    Idempotent: a ready report is returned untouched (a second beat run, a retry, a double
    command). The row is locked while it is generated, so two runs at once make one report.
    A failure marks the row failed with its error and is raised again: the next run retries."""
    if kind not in SECTIONS:
        raise ValueError(f"unknown report kind {kind!r}")
    report = _row(kind, start, end)
    if report.status == Report.Status.READY:
        return report
    try:
        with transaction.atomic():
            report = Report.objects.select_for_update().get(pk=report.pk)
            if report.status == Report.Status.READY:  # another run finished it while we waited
                return report
            if report.status == Report.Status.FAILED:
                REPORT_FLOW.apply(report, Report.Status.GENERATING, actor=generated_by, note="retry")
            now = now or timezone.now()
            files, summary = _render(kind, start, end, generated_by=generated_by, now=now)
            REPORT_FLOW.apply(
                report,
                Report.Status.READY,
                actor=generated_by,
                update={
                    "pdf": files["pdf"],
                    "xlsx": files["xlsx"],
                    "summary": summary,
                    "generated_by": generated_by,
                    "generated_at": now,
                    "attempts": report.attempts + 1,
                    "last_error": "",
                },
            )
    except Exception as exc:
        _failed(report.pk, exc, actor=generated_by)
        log.exception("report %s %s to %s failed", kind, start, end)
        raise
    log.info("report %s %s to %s generated (%d bytes PDF)", kind, start, end, len(files["pdf"]))
    return report


def _failed(pk: int, exc: Exception, *, actor) -> None:
    """Record the failure (its own transaction: the run's was rolled back) for the retry."""
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=pk)
        if report.status == Report.Status.FAILED:  # it was failed before this retry's move rolled back
            Report.objects.filter(pk=pk).update(
                attempts=report.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:300]
            )
            return
        if report.status != Report.Status.GENERATING:
            return
        REPORT_FLOW.apply(
            report,
            Report.Status.FAILED,
            actor=actor,
            note=f"{type(exc).__name__}"[:100],
            update={"attempts": report.attempts + 1, "last_error": f"{type(exc).__name__}: {exc}"[:300]},
        )


def _render(kind: str, start: date, end: date, *, generated_by, now: datetime) -> tuple[dict[str, bytes], dict]:
    """Read every section of the period and render both files."""
    period = Period(start=start, end=end, now=now)
    # Reports go to Chinese regulators: written in the site's language whoever asks.
    with translation.override(settings.LANGUAGE_CODE):
        # An ended period: settled records, read from the replica when there is one (the lock on
        # the report's row stays on the primary, in the caller's transaction).
        with replica_reads():
            tables = [section(period) for section in SECTIONS[kind].values()]
            company, credit_code = _company()
        doc = Document(
            title=str(Report.Kind(kind).label),
            company=company,
            credit_code=credit_code,
            period=_("%(start)s to %(end)s") % {"start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}"},
            generated_at=now,
            generated_by=user_display(generated_by) if generated_by is not None else _("the schedule"),
            tables=tables,
        )
        files = {"pdf": pdf.render(doc), "xlsx": xlsx.render(doc)}
    return files, {name: t.summary for name, t in zip(SECTIONS[kind], tables, strict=True)}
