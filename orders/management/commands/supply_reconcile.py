from datetime import date

from django.core.management.base import BaseCommand, CommandError

from marketplace.errors import ServiceError
from orders.services import supply_reconciliation
from supply.models import SupplierConnection


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--day {text!r} is not a date like 2024-03-01") from None


class Command(BaseCommand):
    help = (
        "Query a day's supplier orders at each enabled supplier connection (or one) and record every "
        "difference with our orders for staff (admin: supplier reconciliations). Running a day again "
        "replaces its findings, keeping the resolutions of those found again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--day", help="YYYY-MM-DD, Beijing time (default: yesterday)")
        parser.add_argument("--connection", help="one connection's name (default: every enabled one)")

    def handle(self, *args, **options):
        day = _day(options["day"]) if options["day"] else supply_reconciliation.yesterday()
        if options["connection"]:
            found = SupplierConnection.objects.filter(name=options["connection"]).values_list("pk", flat=True)
            if not found:
                raise CommandError(f"no supplier connection is named {options['connection']!r}")
            ids = list(found)
        else:
            ids = supply_reconciliation.connections_to_reconcile()
        if not ids:
            raise CommandError("no supplier connection is enabled")
        failed = []
        for pk in ids:
            try:
                run = supply_reconciliation.supply_reconcile(connection_id=pk, day=day)
            except ServiceError as exc:
                self.stderr.write(f"connection {pk} {day}: {exc}")
                failed.append(str(pk))
                continue
            summary = (
                f"{run.connection} {day}: {run.orders_checked} orders checked, {run.mismatches} mismatch(es); "
                f"cost ours {run.our_cost}, supplier's {run.supplier_cost}"
                f"{'  (' + run.error + ')' if run.error else ''}"
            )
            self.stdout.write(self.style.WARNING(summary) if run.mismatches else self.style.SUCCESS(summary))
            for m in run.items.order_by("kind", "our_number"):
                self.stdout.write(f"  {m.kind:<14} {m.our_number}: ours {m.ours or '-'}, supplier {m.theirs or '-'}")
        if failed:
            raise CommandError(f"not reconciled: connection(s) {', '.join(failed)}")
