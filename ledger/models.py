"""A double-entry journal. Every movement of money is one entry whose lines sum to zero.

Lines carry signed amounts: debits positive, credits negative. Entries and lines are never
updated or deleted (database triggers refuse it); a mistake is corrected by a reversing entry.

Accounts that may not be overdrawn (wallets, commissions) have a ``Balance`` row holding the
account's natural balance (debit-normal accounts: debits − credits; credit-normal: credits −
debits), and a CHECK keeps it at zero or above. The rows are the database's: created with the
account and moved by every journal line, by triggers (migration 0004), never by the
application. An account's kind and overdraft rule are fixed when it is created.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Account(models.Model):
    class Kind(models.TextChoices):
        ASSET = "asset", _("Asset")
        LIABILITY = "liability", _("Liability")
        EQUITY = "equity", _("Equity")
        REVENUE = "revenue", _("Revenue")
        EXPENSE = "expense", _("Expense")

    code = models.CharField(pgettext_lazy("ledger account", "code"), max_length=80, unique=True)
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        related_name="ledger_accounts",
        on_delete=models.PROTECT,
    )
    allow_negative = models.BooleanField(_("may go below zero"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("code",)
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")

    def __str__(self):
        return self.code

    @property
    def debit_normal(self) -> bool:
        return self.kind in (self.Kind.ASSET, self.Kind.EXPENSE)


class Entry(models.Model):
    """One movement of money. Its lines are written first; writing the entry seals them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(_("kind"), max_length=30, db_index=True)
    reference = models.CharField(_("reference"), max_length=80, blank=True, db_index=True)
    memo = models.CharField(_("memo"), max_length=200, blank=True)
    # Posting the same business event twice gives the first entry back.
    idempotency_key = models.CharField(max_length=120, unique=True, null=True, blank=True)
    reverses = models.OneToOneField(
        "self", verbose_name=_("reverses"), null=True, blank=True, related_name="reversed_by", on_delete=models.PROTECT
    )
    created_at = models.DateTimeField(_("posted"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = _("journal entry")
        verbose_name_plural = _("journal entries")

    def __str__(self):
        return f"{self.kind} {self.reference} {self.created_at:%Y-%m-%d %H:%M}"


class Line(models.Model):
    entry = models.ForeignKey(Entry, verbose_name=_("entry"), related_name="lines", on_delete=models.PROTECT)
    # No index of its own: ledger_line_account_idx (account, entry) leads with it (ledger 0006).
    account = models.ForeignKey(
        Account, verbose_name=_("account"), related_name="lines", on_delete=models.PROTECT, db_index=False
    )
    amount = models.DecimalField(_("amount (debit +, credit −)"), max_digits=14, decimal_places=2)

    class Meta:
        verbose_name = _("journal line")
        verbose_name_plural = _("journal lines")
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_line_not_zero")]
        indexes = [models.Index(fields=["account", "entry"], name="ledger_line_account_idx")]

    def __str__(self):
        return f"{self.account_id} {self.amount}"


class Balance(models.Model):
    account = models.OneToOneField(Account, primary_key=True, related_name="balance", on_delete=models.PROTECT)
    balance = models.DecimalField(_("balance"), max_digits=14, decimal_places=2, default=0)
    allow_negative = models.BooleanField(default=False)  # a copy of the account's, for the CHECK
    # A copy of the account's side (kind asset or expense), so the line trigger needs one row.
    debit_normal = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("balance")
        verbose_name_plural = _("balances")
        constraints = [
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0), name="ledger_balance_not_overdrawn"
            )
        ]

    def __str__(self):
        return f"{self.account_id}: {self.balance}"
