from django.core.management.base import BaseCommand

from catalog import services


class Command(BaseCommand):
    help = "Re-encrypt every card code under the first key of CARD_CODE_KEYS (after adding a new key in front)."

    def handle(self, *args, **options):
        count = services.rotate_code_keys()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} card codes under the primary key."))
