"""Minors' spending on game top-ups (国家新闻出版署《关于防止未成年人沉迷网络游戏的通知》,
国新出发〔2019〕34号, 第三条 "严格控制未成年人网络游戏消费"):

- 不得为未满8周岁的用户提供游戏付费服务 (under 8: no purchase);
- 8周岁以上未满16周岁: 单次充值金额不得超过50元人民币, 每月充值金额累计不得超过200元人民币;
- 16周岁以上未满18周岁: 单次充值金额不得超过100元人民币, 每月充值金额累计不得超过400元人民币.

The values live in ``MinorLimit`` (staff edit them in admin; migration 0008 seeds the national
ones). "不得超过" means "not more than": a payment of exactly the limit, and a month that reaches
exactly the monthly limit, are allowed. The age is the verified birth date's, in full years, on
the day of the order in China (Asia/Shanghai). ``orders.services.orders.order_place`` calls
:func:`minor_limit_check` for every channel, with what the same person (by identity number)
already spent this calendar month, which the orders app sums.
"""

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import ServiceError

from .identity import age_on
from .models import MinorLimit

CHINA = ZoneInfo("Asia/Shanghai")


class MinorLimitError(ServiceError):
    """A game top-up a minor may not make; the message names the limit."""

    code = "minor_limit"
    status = 403


@dataclass(frozen=True)
class MonthWindow:
    start: datetime
    end: datetime


def china_today(now: datetime | None = None) -> date:
    return timezone.localtime(now or timezone.now(), CHINA).date()


def month_window(now: datetime | None = None) -> MonthWindow:
    """The calendar month (Asia/Shanghai) that ``now`` falls in, as aware datetimes."""
    today = china_today(now)
    start = datetime.combine(today.replace(day=1), time.min, tzinfo=CHINA)
    following = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    return MonthWindow(start=start, end=datetime.combine(following, time.min, tzinfo=CHINA))


def minor_limit_for(age: int) -> MinorLimit | None:
    """The limit row whose ages cover ``age``, or None (an adult, or no row)."""
    return MinorLimit.objects.filter(age_from__lte=age, age_to__gt=age).order_by("age_from").first()


def _yuan(amount: Decimal) -> str:
    return f"¥{amount:.2f}"


def minor_limit_check(*, birth_date: date, amount: Decimal, month_spent: Decimal, now: datetime | None = None) -> None:
    """Refuse (``MinorLimitError``) a game top-up of ``amount`` by someone born on
    ``birth_date`` who already spent ``month_spent`` on game top-ups this calendar month."""
    age = age_on(birth_date, china_today(now))
    limit = minor_limit_for(age)
    if limit is None:
        return
    if not limit.allowed:
        raise MinorLimitError(
            _("Game top-ups are not sold to users under %(age)d (you are %(years)d).")
            % {"age": limit.age_to, "years": age},
            code="minor_no_purchase",
        )
    if limit.per_payment is not None and amount > limit.per_payment:
        raise MinorLimitError(
            _("Users under %(age)d may top up at most %(limit)s per payment (this payment: %(amount)s).")
            % {"age": limit.age_to, "limit": _yuan(limit.per_payment), "amount": _yuan(amount)},
            code="minor_per_payment",
        )
    if limit.per_month is not None and month_spent + amount > limit.per_month:
        raise MinorLimitError(
            _(
                "Users under %(age)d may top up at most %(limit)s per calendar month "
                "(this month so far: %(spent)s, this payment: %(amount)s)."
            )
            % {
                "age": limit.age_to,
                "limit": _yuan(limit.per_month),
                "spent": _yuan(month_spent),
                "amount": _yuan(amount),
            },
            code="minor_per_month",
        )
