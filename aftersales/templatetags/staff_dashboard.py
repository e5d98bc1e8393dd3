"""``{% staff_dashboard %}`` on the admin index (templates/admin/index.html): aftersales.admin.dashboard."""

from django import template

from aftersales.admin.dashboard import staff_dashboard as dashboard_build

register = template.Library()


@register.inclusion_tag("admin/_dashboard.html", takes_context=True)
def staff_dashboard(context):
    request = context.get("request")
    if request is None or not request.user.is_staff:
        return {"board": None}
    return {"board": dashboard_build(user=request.user)}
