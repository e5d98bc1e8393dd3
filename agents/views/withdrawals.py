"""The agent's withdrawals page: balances, the request form (with a live fee preview) and history."""

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from compliance.services import audit_denied
from marketplace.http import client_ip

from ..models import Agent, Withdrawal
from ..services import withdrawals


def _agent(request) -> Agent:
    agent = Agent.objects.select_related("user", "level").filter(user=request.user).first()
    if agent is None:
        raise Http404("not an agent")
    return agent


def _rule() -> dict:
    return {
        "min": withdrawals.min_amount(),
        "percent": withdrawals.fee_percent().normalize(),
        "fee_min": withdrawals.fee_min(),
    }


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def withdrawal_list(request):
    agent = _agent(request)
    error = ""
    data = {"method": Withdrawal.Method.ALIPAY}
    if request.method == "POST":
        data = {
            key: request.POST.get(key, "")
            for key in ("amount", "method", "payee_name", "payee_account", "bank_name", "token")
        }
        try:
            withdrawal = withdrawals.withdrawal_request(
                agent=agent,
                amount=data["amount"],
                method=data["method"],
                payee_name=data["payee_name"],
                payee_account=data["payee_account"],
                bank_name=data["bank_name"],
                idempotency_key=data["token"],
                ip=client_ip(request),
            )
        except withdrawals.WithdrawalError as exc:
            error = str(exc)
        else:
            messages.success(
                request,
                _("Withdrawal %(number)s requested: ¥%(amount)s is set aside until staff review it.")
                % {"number": withdrawal.number, "amount": withdrawal.amount},
            )
            return redirect("agents:withdrawal_detail", number=withdrawal.number)
    last = withdrawals.withdrawals_of(agent=agent).exclude(status=Withdrawal.Status.REJECTED).first()
    if request.method == "GET" and last is not None:  # fill in the payee they used last time
        data.update(method=last.method, payee_name=last.payee_name, bank_name=last.bank_name)
    history = list(withdrawals.withdrawals_of(agent=agent)[:50])
    context = {
        "agent": agent,
        "summary": withdrawals.withdrawal_summary(agent=agent),
        "rule": _rule(),
        "refund_window_days": settings.REFUND_WINDOW_DAYS,
        "form": data,
        "token": data.get("token") if error else uuid.uuid4().hex,
        "error": error,
        "methods": Withdrawal.Method.choices,
        "history": [(w, withdrawals.payee_account_masked(w)) for w in history],
    }
    return render(request, "agents/withdrawals.html", context, status=400 if error else 200)


@login_required
@require_GET
def withdrawal_fee(request):
    """The fee and the net for an amount being typed (htmx swaps it in under the field)."""
    _agent(request)
    context = {"rule": _rule()}
    raw = request.GET.get("amount", "").strip()
    if raw:
        try:
            amount = withdrawals.parse_amount(raw)
            fee, net = withdrawals.amount_check(amount)
        except withdrawals.WithdrawalError as exc:
            context["error"] = str(exc)
        else:
            context.update(amount=amount, fee=fee, net=net)
    return render(request, "agents/withdrawals_fee.html", context)


@login_required
@never_cache
@require_GET
def withdrawal_detail(request, number: str):
    agent = _agent(request)
    withdrawal = withdrawals.withdrawal_of(agent=agent, number=number)
    if withdrawal is None:
        other = Withdrawal.objects.filter(number=number).exists()
        audit_denied(
            action="withdrawal.view",
            request=request,
            target=number[:40],
            detail="another agent's withdrawal" if other else "no such withdrawal",
        )
        raise Http404("no such withdrawal")
    return render(
        request,
        "agents/withdrawals_detail.html",
        {
            "agent": agent,
            "withdrawal": withdrawal,
            "account": withdrawals.payee_account_masked(withdrawal),
            "history": list(withdrawal.history.select_related(None).all()),
        },
    )
