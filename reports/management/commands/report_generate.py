"""Generate a report now: ``manage.py report_generate --kind monthly_compliance --period 2026-11``
(or ``--kind operators_halfyear --period 2026-H2``). A ready report is not made again; a failed
one is retried. ``--staff EMAIL`` records who asked (else it reads as the schedule's)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from marketplace.errors import ServiceError
from reports.models import Report
from reports.periods import period_parse
from reports.services import report_generate


class Command(BaseCommand):
    help = "Generate a report to regulators for one period (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=Report.Kind.values)
        parser.add_argument("--period", required=True, help="YYYY-MM for a monthly report, YYYY-H1/H2 for a half year")
        parser.add_argument("--staff", default="", help="the email of the staff member asking")

    def handle(self, *args, kind, period, staff, **options):
        try:
            start, end = period_parse(period, half_year=kind == Report.Kind.OPERATORS_HALFYEAR)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        user = None
        if staff:
            user = get_user_model().objects.filter(email__iexact=staff, is_staff=True).first()
            if user is None:
                raise CommandError(f"no staff account {staff}")
        report = report_generate(kind=kind, start=start, end=end, generated_by=user)
        self.stdout.write(
            f"{report} [{report.status}] generated {report.generated_at:%Y-%m-%d %H:%M}: "
            f"PDF {len(report.pdf or b'')} bytes, XLSX {len(report.xlsx or b'')} bytes"
        )
