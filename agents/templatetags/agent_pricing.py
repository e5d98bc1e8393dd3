"""Show a logged-in agent its own price on the platform's catalogue pages.

A template tag rather than code in ``catalog.views``: catalog sits below agents and does not
import it; the (project-level) templates are the top layer and may ask agents for a price.
"""

from django import template

from agents.selectors import agent_costs

register = template.Library()


def viewing_agent(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return getattr(user, "agent", None)  # a missing profile raises an AttributeError subclass


@register.simple_tag(takes_context=True)
def agent_prices(context, products):
    """Set ``agent_price`` on each product (a list, or one product) for an agent viewer, else None.

    One price resolution for the whole list (a constant number of queries).
    """
    items = list(products) if hasattr(products, "__iter__") else [products]
    agent = viewing_agent(context.get("request"))
    costs = agent_costs(agent=agent, products=items) if agent is not None and items else {}
    for item in items:
        item.agent_price = costs.get(item.pk)
    return ""
