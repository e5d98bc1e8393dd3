"""The agent's operator identity page at /agent/storefront/operator/: submit it, see where its
verification stands (and why it was refused), change it. 网络交易监督管理办法 第二十四条: a
storefront opens only once staff verified who runs it (``agents.services.operators``)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from ..models import OperatorIdentity, Storefront
from ..selectors import SMALL_SALES_YEARLY_LIMIT, id_number_masked, operator_identity_of
from ..services import operators
from ..services.agents import AgentError
from .storefront_manage import _agent, _errors


@login_required
def operator_identity(request):
    agent = _agent(request, "storefront.operator")
    identity = operator_identity_of(agent)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        posted = request.POST
        try:
            before = identity.status if identity is not None else None
            identity = operators.operator_identity_submit(
                agent=agent,
                kind=posted.get("kind", ""),
                legal_name=posted.get("legal_name", ""),
                address=posted.get("address", ""),
                phone=posted.get("phone", ""),
                id_number=posted.get("id_number", ""),
                company_name=posted.get("company_name", ""),
                credit_code=posted.get("credit_code", ""),
                small_sales_declared=posted.get("small_sales_declared") == "on",
                licence_image=request.FILES.get("licence_image") or operators.KEEP,
                request=request,
            )
        except AgentError as exc:
            errors = _errors(exc)
        else:
            if before == OperatorIdentity.Status.VERIFIED and identity.status != before:
                messages.warning(
                    request,
                    _("Your changes were submitted. Your storefront is hidden until staff verify them."),
                )
            elif before is not None and identity.status == before and before != OperatorIdentity.Status.SUBMITTED:
                messages.info(request, _("Nothing changed."))
            else:
                messages.success(request, _("Submitted. Staff verify it, usually within one working day."))
            return redirect("agents:operator_identity")
    if request.method == "POST":
        values = request.POST
    elif identity is not None:
        values = {
            "kind": identity.kind,
            "legal_name": identity.legal_name,
            "company_name": identity.company_name,
            "credit_code": identity.credit_code,
            "address": identity.address,
            "phone": identity.phone,
            "small_sales_declared": "on" if identity.small_sales_declared else "",
        }
    else:
        values = {"kind": OperatorIdentity.Kind.INDIVIDUAL}
    has_licence = (
        identity is not None and OperatorIdentity.objects.filter(pk=identity.pk, licence_image__isnull=False).exists()
    )
    return render(
        request,
        "agents/operator_identity.html",
        {
            "section": "storefront",
            "identity": identity,
            "masked_id": id_number_masked(identity) if identity is not None else "",
            "has_licence": has_licence,
            "values": values,
            "errors": errors,
            "kinds": OperatorIdentity.Kind.choices,
            "small_sales_limit": SMALL_SALES_YEARLY_LIMIT,
            "storefront": Storefront.objects.filter(agent=agent).defer("logo").first(),
        },
        status=400 if errors else 200,
    )
