"""The agent centre's coupons (店铺 › 优惠券): an agent's coupons for its own storefront, created
through ``coupon_create`` (refused, with the reason, when one could sell below the agent's
cost), listed with their figures (``marketing.selectors.coupon_figures``), with single-use
codes generated on demand and exported as CSV. Only the signed-in agent's own coupons: another
agent's is a 404."""

from datetime import datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from agents.models import Storefront
from agents.views.dashboard import agent_required
from marketplace.errors import ServiceError

from . import selectors
from .models import Coupon
from .services import coupons


class AgentCouponForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=80)
    kind = forms.ChoiceField(label=gettext_lazy("Discount"), choices=Coupon.Kind.choices, initial=Coupon.Kind.FIXED)
    amount = forms.DecimalField(label=gettext_lazy("Amount off (CNY)"), required=False, min_value=0, decimal_places=2)
    percent = forms.DecimalField(label=gettext_lazy("Percent off"), required=False, min_value=0, max_value=100)
    cap = forms.DecimalField(label=gettext_lazy("At most (CNY)"), required=False, min_value=0, decimal_places=2)
    min_spend = forms.DecimalField(
        label=gettext_lazy("Minimum spend (CNY)"), required=False, min_value=0, decimal_places=2
    )
    ends_on = forms.DateField(label=gettext_lazy("Valid until (inclusive)"))
    total_limit = forms.IntegerField(label=gettext_lazy("Total uses"), required=False, min_value=1)
    per_user_limit = forms.IntegerField(label=gettext_lazy("Uses per buyer"), required=False, min_value=1, initial=1)
    new_buyers_only = forms.BooleanField(label=gettext_lazy("New buyers only"), required=False)
    public_code = forms.CharField(label=gettext_lazy("Public code"), required=False, max_length=40)
    generate = forms.IntegerField(
        label=gettext_lazy("Single-use codes"), required=False, min_value=0, max_value=coupons.MAX_GENERATE
    )

    @property
    def error(self) -> str | None:
        if self.is_valid():
            return None
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else ""
            return f"{label}: {errors[0]}" if label else errors[0]
        return None


def _storefront(agent) -> Storefront | None:
    return Storefront.objects.filter(agent=agent).defer("logo").first()


def _own(request, pk: int) -> Coupon:
    coupon = selectors.coupon_of_agent(agent=request.agent, pk=pk)
    if coupon is None:
        raise Http404("not found")
    return coupon


@agent_required
def coupon_list(request):
    """The agent's coupons and the form to create one (POST creates)."""
    sf = _storefront(request.agent)
    form = AgentCouponForm(request.POST if request.method == "POST" else None, initial={"per_user_limit": 1})
    error = None
    if request.method == "POST" and sf is not None:
        error = form.error
        if error is None:
            data = form.cleaned_data
            ends_at = timezone.make_aware(datetime.combine(data["ends_on"] + timedelta(days=1), time.min))
            try:
                coupon = coupons.coupon_create(
                    name=data["name"],
                    kind=data["kind"],
                    ends_at=ends_at,
                    amount=data.get("amount") or 0,
                    percent=data.get("percent") or 0,
                    cap=data.get("cap"),
                    min_spend=data.get("min_spend") or 0,
                    total_limit=data.get("total_limit"),
                    per_user_limit=data.get("per_user_limit"),
                    new_buyers_only=data.get("new_buyers_only", False),
                    agent=request.agent,
                    public_code=data.get("public_code") or "",
                    generate=data.get("generate") or 0,
                    created_by=request.user,
                )
            except ServiceError as exc:
                error = str(exc)
            else:
                messages.success(request, _("Coupon “%(name)s” created.") % {"name": coupon.name})
                return redirect("agents:coupon_detail", pk=coupon.pk)
    rows = list(selectors.coupons_of_agent(agent=request.agent).prefetch_related("codes")[:100])
    return render(
        request,
        "agents/coupons.html",
        {"section": "storefront", "tab": "coupons", "storefront": sf, "form": form, "error": error, "rows": rows},
        status=400 if error else 200,
    )


@agent_required
def coupon_detail(request, pk: int):
    coupon = _own(request, pk)
    public = coupon.codes.filter(max_uses__isnull=True).first()
    single = coupon.codes.filter(max_uses=1)
    return render(
        request,
        "agents/coupon_detail.html",
        {
            "section": "storefront",
            "tab": "coupons",
            "storefront": _storefront(request.agent),
            "coupon": coupon,
            "public_code": public,
            "single_total": single.count(),
            "single_used": single.filter(used__gte=1).count(),
            "recent_codes": list(single.order_by("-pk")[:20]),
            "running": coupon.is_active and coupon.ends_at > timezone.now(),
            "max_generate": coupons.MAX_GENERATE,
        },
    )


@agent_required
@require_POST
def coupon_generate(request, pk: int):
    coupon = _own(request, pk)
    raw = (request.POST.get("count") or "").strip()
    count = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    try:
        made = coupons.coupon_codes_generate(coupon=coupon, count=count)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(n)d codes generated.") % {"n": made})
    return redirect("agents:coupon_detail", pk=coupon.pk)


@agent_required
def coupon_codes_csv(request, pk: int):
    coupon = _own(request, pk)
    response = HttpResponse(coupons.coupon_codes_csv(coupon=coupon), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="coupon-{coupon.pk}-codes.csv"'
    return response


@agent_required
@require_POST
def coupon_pause(request, pk: int):
    """Pause or resume a coupon (``is_active``): a paused coupon refuses new orders at once."""
    coupon = _own(request, pk)
    coupons.coupon_active_set(coupon=coupon, active=request.POST.get("active") == "1")
    return redirect("agents:coupon_detail", pk=coupon.pk)
