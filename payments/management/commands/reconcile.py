from datetime import date

from django.core.management.base import BaseCommand, CommandError

from marketplace.errors import ServiceError
from payments.services import reconciliation


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--day {text!r} is not a date like 2024-03-01") from None


class Command(BaseCommand):
    help = (
        "Download a day's bill from each gateway (or one) and match it with our payments and refunds; "
        "mismatches are recorded for staff (admin: reconciliation runs). Running a day again replaces them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--day", help="YYYY-MM-DD, Beijing time (default: yesterday)")
        parser.add_argument("--gateway", help="one gateway code, e.g. alipay (default: every enabled one)")

    def handle(self, *args, **options):
        day = _day(options["day"]) if options["day"] else reconciliation.yesterday()
        enabled = reconciliation.bill_gateways()
        codes = [options["gateway"]] if options["gateway"] else enabled
        if not codes:
            raise CommandError("no gateway with bills is enabled")
        failed = []
        for code in codes:
            try:
                run = reconciliation.reconciliation_run(gateway_code=code, day=day)
            except ServiceError as exc:  # GatewayError, ReconciliationError
                self.stderr.write(f"{code} {day}: {exc}")
                failed.append(code)
                continue
            summary = (
                f"{code} {day}: {run.bill_lines} bill lines, {run.our_records} of ours, {run.matched} matched; "
                f"{run.missing_here} missing here, {run.missing_there} missing there, "
                f"{run.amount_differs} amount differs"
            )
            self.stdout.write(self.style.WARNING(summary) if run.mismatch_total else self.style.SUCCESS(summary))
            for m in run.mismatches.all():
                self.stdout.write(
                    f"  {m.kind:<15} order {m.order_number or '-'} trade {m.trade_no or '-'}"
                    f"{' refund ' + m.refund_no if m.refund_no else ''}: ours {m.ours if m.ours is not None else '-'}, "
                    f"bill {m.theirs if m.theirs is not None else '-'}{'  (' + m.note + ')' if m.note else ''}"
                )
        if failed:
            raise CommandError(f"not reconciled: {', '.join(failed)}")
