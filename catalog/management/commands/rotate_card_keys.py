from django.core.management.base import BaseCommand

from accounts.services import mfa_secrets_rotate
from catalog import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every card code and two-factor secret under the first key of CARD_CODE_KEYS "
        "(after adding a new key in front)."
    )

    def handle(self, *args, **options):
        count = services.rotate_code_keys()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} card codes under the primary key."))
        secrets = mfa_secrets_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {secrets} two-factor secrets under the primary key."))
