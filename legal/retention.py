"""Transaction records are kept, never deleted.

电子商务法 第三十一条: 电子商务平台经营者应当记录、保存平台上发布的商品和服务信息、交易信息，并确保
信息的完整性、保密性、可用性。商品和服务信息、交易信息保存时间自交易完成之日起不少于三年. Orders and their
codes, reveals and histories, payments, refunds, tickets, refund requests, reissues, arbitration,
the audit log and the agreements accepted are therefore never hard-deleted:

- in PostgreSQL, BEFORE DELETE triggers refuse it whatever code talks to the database
  (``legal/migrations/0002_retention_triggers.py``; the ledger has its own, append-only);
- in Python (SQLite in development has no such triggers), a ``pre_delete`` guard refuses the
  ORM's deletes of those models with a ``RecordsRetained`` error (``LegalConfig.ready``);
- in admin, none of them has a delete permission (``marketplace.admin.ReadOnlyMixin``).

Closing an account anonymises the person and keeps these records (``aftersales.services.accounts``).
"""

from django.db.models.signals import pre_delete
from django.utils.translation import gettext as _

from marketplace.errors import Conflict

# The tables (db_table, so no app above is imported) whose rows are transaction records. The
# ledger's journal is not here: its own triggers keep it append-only (ledger/migrations/0002).
RETAINED_TABLES = frozenset(
    {
        "orders_order",
        "orders_orderstatuschange",
        "orders_ordercode",
        "orders_codereveal",
        "orders_ordershare",
        "payments_recharge",
        "payments_rechargestatuschange",
        "payments_notification",
        "payments_payment",
        "payments_refund",
        "payments_refundstatuschange",
        "aftersales_ticket",
        "aftersales_ticketstatuschange",
        "aftersales_ticketmessage",
        "aftersales_refundrequest",
        "aftersales_refundrequeststatuschange",
        "aftersales_reissue",
        "aftersales_arbitrationcase",
        "aftersales_arbitrationcasestatuschange",
        "compliance_auditevent",
        "legal_agreementacceptance",
    }
)


class RecordsRetained(Conflict):
    code = "records_retained"


def refuse_delete(sender, instance, **kwargs) -> None:
    table = sender._meta.db_table
    published = table == "legal_agreementversion" and getattr(instance, "published_at", None) is not None
    if table in RETAINED_TABLES or published:
        raise RecordsRetained(
            _(
                "%(record)s is a transaction record and is kept for at least three years "
                "(E-Commerce Law, Art. 31): it cannot be deleted."
            )
            % {"record": sender._meta.verbose_name}
        )


def connect() -> None:
    pre_delete.connect(refuse_delete, dispatch_uid="legal.retention.refuse_delete")
