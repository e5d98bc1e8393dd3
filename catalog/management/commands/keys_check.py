from django.core.management.base import BaseCommand, CommandError

from marketplace import crypto


class Command(BaseCommand):
    help = (
        "Decrypt every secret kept with CARD_CODE_KEYS, and exit 1 if any cannot be read: before "
        "dropping an old key (--primary-only), and on a restored backup (are its keys kept?)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--primary-only",
            action="store_true",
            help="with the first key alone: may the other keys be dropped?",
        )

    def handle(self, *args, primary_only=False, **options):
        crypto.reset_key_cache()
        report = crypto.check_all(primary_only=primary_only)
        failed = 0
        for found in report:
            line = f"{found.model}: {found.tokens} secrets, {found.failed} unreadable"
            if found.failed:
                failed += found.failed
                self.stderr.write(f"{line} (e.g. {', '.join(found.examples)})")
            else:
                self.stdout.write(line)
        keys = "the primary key" if primary_only else "the configured keys"
        if failed:
            raise CommandError(f"{failed} secrets cannot be read with {keys}: keep the key that wrote them")
        self.stdout.write(self.style.SUCCESS(f"Every secret reads with {keys}."))
