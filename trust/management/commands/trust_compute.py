"""Compute the trust centre's figures now (what the hourly beat task does): `dev.py up` runs it
after the demo seeds so the demo's /trust/ has figures."""

from django.core.management.base import BaseCommand

from trust.services import trust_figures_compute


class Command(BaseCommand):
    help = "Compute the trust centre's figures from the records and replace the stored snapshot."

    def handle(self, *args, **options):
        count = trust_figures_compute()
        if options["verbosity"]:
            self.stdout.write(f"trust centre: {count} figures computed")
