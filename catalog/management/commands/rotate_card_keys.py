from django.core.management.base import BaseCommand

from marketplace import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every secret kept with CARD_CODE_KEYS (card codes, stock uploads, API secrets, "
        "payout accounts, ID numbers, supplier credentials, two-factor secrets) under its first key, "
        "after a new key was put in front. Then `keys_check --primary-only`, then drop the old key."
    )

    def handle(self, *args, **options):
        crypto.reset_key_cache()
        for model, rows in crypto.rotate_all().items():
            self.stdout.write(f"{model}: {rows} rows re-encrypted under the primary key")
        self.stdout.write(self.style.SUCCESS("Every declared secret is now under the primary key."))
