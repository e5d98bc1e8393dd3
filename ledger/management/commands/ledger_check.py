from django.core.management.base import BaseCommand, CommandError

from ledger import selectors


class Command(BaseCommand):
    help = "Print the trial balance and check every ledger invariant (exit 1 on a problem)."

    def handle(self, *args, **options):
        rows = selectors.trial_balance()
        total_debits = sum(r.debits for r in rows)
        total_credits = sum(r.credits for r in rows)
        self.stdout.write(f"{'account':<40}{'debits':>14}{'credits':>14}{'balance':>14}")
        for r in rows:
            self.stdout.write(f"{r.account.code:<40}{r.debits:>14}{r.credits:>14}{r.balance:>14}")
        self.stdout.write(f"{'total':<40}{total_debits:>14}{total_credits:>14}")
        funds = selectors.funds_isolation()
        self.stdout.write(
            f"funds isolation: owed to customers {funds.owed}, held at channels {funds.held}, "
            f"revenue {funds.revenue}: {'covered' if funds.covered else 'NOT COVERED'}"
        )
        found = selectors.problems()  # includes every balance row against the sum of its lines
        self.stdout.write(f"balance rows compared with the sum of their lines: {selectors.balance_row_count()}")
        if not funds.covered:
            found.append(f"customers' money ({funds.owed}) is not covered by the channels' ({funds.held})")
        if total_debits != total_credits:
            found.append(f"debits {total_debits} != credits {total_credits}")
        if found:
            for problem in found:
                self.stderr.write(problem)
            raise CommandError(f"{len(found)} ledger problem(s)")
        self.stdout.write(
            self.style.SUCCESS(
                "Ledger OK: every entry balances, every balance row equals its lines, none is overdrawn."
            )
        )
