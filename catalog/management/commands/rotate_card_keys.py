from django.core.management.base import BaseCommand, CommandError

from marketplace import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every secret kept with CARD_CODE_KEYS (card codes, stock uploads, API secrets, "
        "payout accounts, ID numbers, supplier credentials, two-factor secrets) under its first key, "
        "after a new key was put in front. Then `keys_check --primary-only`, then drop the old key."
    )

    def handle(self, *args, **options):
        crypto.reset_key_cache()
        # Nothing is rewritten unless everything can be read: a secret no configured key opens
        # would stop the rotation half-way (keys_check says which rows).
        unreadable = sum(found.failed for found in crypto.check_all())
        if unreadable:
            raise CommandError(
                f"{unreadable} secrets cannot be read with CARD_CODE_KEYS: run keys_check, "
                "add the key that wrote them, then rotate. Nothing was changed."
            )
        for model, rows in crypto.rotate_all().items():
            self.stdout.write(f"{model}: {rows} rows re-encrypted under the primary key")
        self.stdout.write(self.style.SUCCESS("Every declared secret is now under the primary key."))
