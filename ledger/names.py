"""A ledger account's name in the reader's language.

Accounts are named once, in English, when they are opened (``ledger.services``'s specs), and the
name is kept as written. Staff read it here in their own language: the English name is matched
against the pattern its code implies and said again with the translated sentence.
"""

import re

from django.utils.translation import gettext_lazy as _

from .models import Account

# (code pattern, the English name as stored, the same name for people); "{x}" is kept as it is.
_NAMES = [
    (
        r"liability:orders_held",
        "Customer payments for orders not yet delivered",
        _("Customer payments for orders not yet delivered"),
    ),
    (r"liability:refunds_due", "Payments to return to customers", _("Payments to return to customers")),
    (r"revenue:sales", "Sales of card codes", _("Sales of card codes")),
    (r"expense:cost_of_sales", "Cost of card codes sold", _("Cost of card codes sold")),
    (r"expense:commissions", "Commissions earned by agents", _("Commissions earned by agents")),
    (
        r"liability:withdrawals_payable",
        "Withdrawals requested, not yet paid out",
        _("Withdrawals requested, not yet paid out"),
    ),
    (r"revenue:withdrawal_fees", "Fees on agents' withdrawals", _("Fees on agents' withdrawals")),
    (
        r"revenue:coupon_discounts",
        "Coupon discounts funded by the platform",
        _("Coupon discounts funded by the platform"),
    ),
    (
        r"revenue:agent_coupon_discounts",
        "Coupon discounts funded by agents' earnings",
        _("Coupon discounts funded by agents' earnings"),
    ),
    (r"expense:referral_rewards", "Referral rewards (marketing)", _("Referral rewards (marketing)")),
    (r"asset:bank", "Bank account (manual transfers)", _("Bank account (manual transfers)")),
    (r"liability:commission_pending:\d+", "Pending commission of {x}", _("Pending commission of %(x)s")),
    (r"liability:commission:\d+", "Available commission of {x}", _("Available commission of %(x)s")),
    (r"asset:agent_receivable:\d+", "Owed by agent {x}", _("Owed by agent %(x)s")),
    (r"asset:clearing:\w+", "Gateway clearing: {x}", _("Gateway clearing: %(x)s")),
    (r"liability:supplier:\d+", "Payable to supplier {x}", _("Payable to supplier %(x)s")),
    (r"liability:wallet:\d+", "Wallet of {x}", _("Wallet of %(x)s")),
]
_COMPILED = [
    (re.compile(code), re.compile(re.escape(english).replace(re.escape("{x}"), "(?P<x>.+)")), shown)
    for code, english, shown in _NAMES
]


def account_name(account: Account) -> str:
    for code, english, shown in _COMPILED:
        if code.fullmatch(account.code) and (match := english.fullmatch(account.name)):
            return str(shown) % match.groupdict() if match.groupdict() else str(shown)
    return account.name
