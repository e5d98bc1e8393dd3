"""Demo data: an approved authorisation review for every demo supplier's products, so the demo's
products are on sale under the ledger (not as products from before it) and the ledger has rows to
export. Safe to run again: a supplier with a review is kept as it is.

The documents are drawn here (a one-page PDF marked as demo data); a reviewer account
(reviewer@demo.local) decides, because the one who submits may not approve.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from catalog.models import Supplier
from rights import services
from rights.models import AuthorisationReview

SUBMITTER = "admin@demo.local"
REVIEWER = "reviewer@demo.local"


def demo_pdf(supplier: str, certificate: str) -> bytes:
    """A minimal one-page PDF saying what it is (demo data, not a real authorisation)."""
    text = f"DEMO authorisation - {certificate} - not a real document".encode("ascii", "replace")
    stream = b"BT /F1 14 Tf 40 780 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


class Command(BaseCommand):
    help = "Approved authorisation reviews for the demo suppliers' products (the ledger's demo rows)."

    def handle(self, *args, **options):
        User = get_user_model()
        submitter = User.objects.filter(email=SUBMITTER).first()
        if submitter is None:
            self.stderr.write("run seed_demo first (no admin@demo.local)")
            return
        reviewer = User.objects.filter(email=REVIEWER).first()
        if reviewer is None:
            # No password: an account that signs in only after a password reset (demo data).
            reviewer = User.objects.create_user(
                username="reviewer-demo", email=REVIEWER, password=None, is_staff=True, is_superuser=True
            )
        today = timezone.localdate()
        made = 0
        for supplier in Supplier.objects.order_by("pk"):
            products = list(supplier.products.order_by("pk"))
            if not products or AuthorisationReview.objects.filter(supplier=supplier).exists():
                continue
            certificate = supplier.authorisation_cert_no or f"DEMO-{supplier.pk:04d}"
            with transaction.atomic():
                review = services.review_submit(
                    supplier_id=supplier.pk,
                    product_ids=[p.pk for p in products],
                    certificate_no=certificate,
                    rights_holder=supplier.name,
                    note="Demo data",
                    documents=[
                        services.document_check(name="authorisation.pdf", data=demo_pdf(supplier.name, certificate))
                    ],
                    by=submitter,
                )
                # About a year from now; one supplier's ends within the month, to show the warning.
                days = 20 if made == 0 else 365
                services.review_approve(
                    review_id=review.pk, by=reviewer, valid_until=today + timedelta(days=days), note="Demo data"
                )
            made += 1
        if options.get("verbosity", 1):
            self.stdout.write(f"authorisation reviews approved: {made}")
