"""Demo after-sales: a support queue staff can work from and a buyer's side to look at.

Six fresh orders of the demo buyer (paid in the sandbox, delivered) get, through the real services:
- a "code invalid" ticket opened 40 hours ago (at risk: its warning is due),
- a "code not received" ticket opened 50 hours ago (overdue: the next SLA sweep breaches and escalates it),
- a question answered in time with a resolution plan and resolved,
- a no-reason refund of an unrevealed code (refunded at once),
- a refund of a revealed code (a dispute under review),
- a dispute staff rejected and the buyer escalated to arbitration, submitted to a consumer association.
The demo admin joins the after-sales supervisors group. Runs once (does nothing when tickets exist).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.test.utils import override_settings
from django.utils import timezone

from catalog import selectors as stock
from catalog.models import Product
from orders.models import Order
from orders.services.orders import order_code_reveal, order_fulfil, order_place
from payments.management.demo import numbered_as_of, risk_relaxed, sale_backdate, tasks_inline
from payments.services.payments import sandbox_pay

from ...models import Kind, ReplyTemplate, Ticket, TicketMessage, TicketStatusChange
from ...services import arbitration, disputes, no_reason, tickets

REPLY_TEMPLATES = [
    (
        "已收到，正在核实",
        "",
        "{buyer} 您好，我们已收到您关于订单 {order}（{product}）的反馈，正在与供货商核实，将在 {due} 前给出处理方案。",
    ),
    (
        "卡密无效：补发",
        Kind.INVALID,
        "已与供货商核实：订单 {order} 的这张卡密确实无法使用。我们已将其标记为问题卡密，并为您补发了一张新卡密，"
        "请在订单页面查看。给您带来不便，非常抱歉。",
    ),
    (
        "请提供截图",
        "",
        "为了尽快核实，请回复本工单并附上充值页面的报错截图（含时间和错误代码）。",
    ),
]


def _backdate(ticket: Ticket, hours: float) -> None:
    """Move a ticket's opening and clocks ``hours`` into the past (as if opened then)."""
    delta = timedelta(hours=hours)
    ticket.refresh_from_db()
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=ticket.created_at - delta,
        last_activity_at=ticket.last_activity_at - delta,
        warn_at=ticket.warn_at - delta,
        first_response_due_at=ticket.first_response_due_at - delta,
        resolution_due_at=ticket.resolution_due_at - delta,
    )
    for message in ticket.messages.all():
        TicketMessage.objects.filter(pk=message.pk).update(created_at=message.created_at - delta)
    for change in ticket.history.all():
        TicketStatusChange.objects.filter(pk=change.pk).update(at=change.at - delta)
    for field in ("resolved_at", "first_responded_at"):
        if getattr(ticket, field):
            Ticket.objects.filter(pk=ticket.pk).update(**{field: getattr(ticket, field) - delta})


class Command(BaseCommand):
    help = "Demo tickets, refunds, a dispute and an arbitration case for the demo buyer."

    def handle(self, *args, **options):
        # The demo's notification emails would only flood the console.
        with (
            override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"),
            tasks_inline(),
            risk_relaxed(),
        ):
            self._seed()

    def _seed(self):
        if Ticket.objects.exists():
            return
        User = get_user_model()
        buyer = User.objects.filter(email="buyer@demo.local").first()
        staff = User.objects.filter(email="admin@demo.local").first()
        if buyer is None or staff is None:
            self.stdout.write("run seed_demo first")
            return
        supervisors, _ = Group.objects.get_or_create(name=settings.AFTERSALES_SUPERVISOR_GROUP)
        staff.groups.add(supervisors)
        for order, (title, kind, body) in enumerate(REPLY_TEMPLATES):
            ReplyTemplate.objects.get_or_create(title=title, defaults={"kind": kind, "body": body, "sort_order": order})
        if not settings.PAYMENTS_SANDBOX_ENABLED:
            self.stdout.write("sandbox payments are off: no demo after-sales")
            return
        # Not the game top-up (it needs a verified real name the demo buyer does not have).
        open_to_all = Product.objects.filter(is_active=True, requires_real_name=False, is_game_topup=False)
        products = [p for p in open_to_all.order_by("pk") if stock.stock_count(p.pk) >= 8]
        if not products:
            self.stdout.write("run seed_demo first (no product has stock)")
            return
        # Hours ago each order was placed: before its ticket (40, 50 and 20 hours ago, the
        # disputes 3 hours ago) and after the demo sales (3 days ago and older), oldest first.
        placed_hours_ago = (60, 55, 30, 10, 6, 4)
        now = timezone.now()
        orders = []
        for i in range(6):
            with numbered_as_of(now - timedelta(hours=placed_hours_ago[i])):
                order = order_place(
                    buyer=buyer, product=products[i % len(products)], quantity=2, idempotency_key=f"demo-aftersales-{i}"
                )
            sandbox_pay(order_number=order.number)
            order_fulfil(order_id=order.pk)
            orders.append(Order.objects.get(pk=order.pk))

        def codes(order):
            return list(disputes.held_codes(order))

        def reveal(order, oc):
            order_code_reveal(
                buyer=buyer, order_number=order.number, order_code_id=oc.pk, ip="203.0.113.7", user_agent="demo"
            )

        at_risk, overdue, answered, auto_refund, disputed, arbitrated = orders[:6]

        first = codes(at_risk)[0]
        reveal(at_risk, first)
        ticket = tickets.ticket_open(
            user=buyer,
            kind=Kind.INVALID,
            subject="充值时提示卡密已被使用",
            body="刚查看卡密去充值，官网提示“该卡已被使用”，请帮忙核实。",
            order=at_risk,
            order_code=first,
        )
        _backdate(ticket, 40)

        ticket = tickets.ticket_open(
            user=buyer,
            kind=Kind.NOT_RECEIVED,
            subject="订单页看不到卡密",
            body="付款成功后订单页一直没有卡密，麻烦看一下。",
            order=overdue,
        )
        _backdate(ticket, 50)

        ticket = tickets.ticket_open(
            user=buyer,
            kind=Kind.OTHER,
            subject="能否开具发票？",
            body="公司报销需要发票，请问怎么申请？",
            order=answered,
        )
        tickets.ticket_reply(
            ticket=ticket,
            author=staff,
            body="可以。请在本工单回复发票抬头和税号，我们会在 3 个工作日内开具电子发票并发到您的邮箱。",
            staff=True,
            resolution_plan=True,
        )
        tickets.ticket_reply(ticket=ticket, author=buyer, body="抬头：示例科技有限公司，税号 91330100MA00000000。")
        tickets.ticket_resolve(ticket=ticket, staff=staff, note="电子发票已发送到您的邮箱，请查收。")
        _backdate(ticket, 20)

        no_reason.refund_request_create(
            user=buyer,
            order=auto_refund,
            order_code_ids=[codes(auto_refund)[0].pk],
            idempotency_key="demo-auto-refund",
        )

        oc = codes(disputed)[0]
        reveal(disputed, oc)
        request = no_reason.refund_request_create(
            user=buyer,
            order=disputed,
            order_code_ids=[oc.pk],
            reason="买错了面值，卡密只看过没有使用。",
            idempotency_key="demo-dispute",
        )
        _backdate(request.ticket, 3)

        oc = codes(arbitrated)[0]
        reveal(arbitrated, oc)
        request = no_reason.refund_request_create(
            user=buyer,
            order=arbitrated,
            order_code_ids=[oc.pk],
            reason="卡密无法充值。",
            idempotency_key="demo-arbitration",
        )
        ticket = request.ticket
        disputes.dispute_reject(
            ticket=ticket,
            staff=staff,
            reason="供应商核实：该卡密已于查看后 2 分钟在官方平台成功充值，充值账号与您的账号一致。",
        )
        ticket.refresh_from_db()
        case = arbitration.arbitration_open(
            ticket=ticket, user=buyer, statement="我没有充值成功，官方平台的记录不是我的账号。"
        )
        arbitration.arbitration_submit(
            case=case, staff=staff, third_party="市消费者协会", case_number="XF-2026-1124-031"
        )
        for order, hours in zip(orders, placed_hours_ago, strict=True):
            sale_backdate(order_id=order.pk, when=now - timedelta(hours=hours))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo after-sales: {Ticket.objects.count()} tickets (one at risk, one overdue, "
                "one dispute under review, one in arbitration)."
            )
        )
