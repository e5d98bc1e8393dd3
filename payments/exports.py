"""A user's transactions as a CSV file, in the user's language (``payments.views.wallet_export``).

Headers, kinds and statuses are translated; times are local, to the second; amounts stay plain
numbers (``-12.30``) so a spreadsheet can add them up.
"""

import csv

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from . import selectors


def _when(at) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def movement_label(kind: str) -> str:
    """A wallet movement's kind (a ledger entry kind) as the wallet page names it."""
    labels = {
        "recharge": pgettext("wallet export", "recharge"),
        "balance_payment": pgettext("wallet export", "order paid from balance"),
        "refund_paid": pgettext("wallet export", "refund to balance"),
    }
    return labels.get(kind, pgettext("wallet export", "balance adjustment"))


def wallet_csv_write(response, user) -> None:
    """Every payment, refund and balance movement of ``user``, as CSV rows into ``response``."""
    writer = csv.writer(response)
    writer.writerow(
        [
            pgettext("wallet export", "time"),
            pgettext("wallet export", "type"),
            pgettext("wallet export", "reference"),
            pgettext("wallet export", "channel"),
            pgettext("wallet export", "gateway trade number"),
            pgettext("wallet export", "amount"),
            pgettext("wallet export", "status"),
        ]
    )
    for p in selectors.user_payments(user, limit=None):
        kind = pgettext("wallet export", "payment") if p.order_id else pgettext("wallet export", "recharge")
        writer.writerow(
            [_when(p.created_at), kind, p.number, p.gateway, p.trade_no, p.amount, p.get_status_display()]
        )
    for r in selectors.user_refunds(user, limit=None):
        reference = r.order.number if r.order_id else r.number
        writer.writerow(
            [
                _when(r.created_at),
                pgettext("wallet export", "refund"),
                reference,
                r.payment.gateway,
                r.payment.trade_no,
                -r.amount,
                r.get_status_display(),
            ]
        )
    balance = _("balance")
    for m in selectors.wallet_movements(user, limit=None):
        writer.writerow([_when(m.at), f"{balance}:{movement_label(m.kind)}", m.reference, "", "", m.amount, ""])
