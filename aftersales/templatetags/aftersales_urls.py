"""``{% buyer_url "ticket" ticket.number %}``: the address of a buyer's after-sales page.

The buyer's pages (the ticket, the refund form, a refund request, arbitration, images) serve a
member under ``/support/`` and a guest under their order, ``/orders/guest/<number>/...``
(``aftersales.urls.guest_urlpatterns``). The same templates render both: a guest's page has
``guest_number`` (the guest order's number) in its context, or a guest ``order``.
"""

from django import template

from marketplace.templatetags.kept import kept_reverse

register = template.Library()

# Member pages whose one argument is the order's number (under a guest order it is in the prefix).
ORDER_ARGUMENT = {"refund_new"}


@register.simple_tag(takes_context=True)
def buyer_url(context, name: str, *args) -> str:
    number = context.get("guest_number")
    order = context.get("order")
    if not number and order is not None and getattr(order, "buyer_id", 0) is None:
        number = order.number  # a guest order's pages are always the guest's
    if not number:
        return kept_reverse(f"aftersales:{name}", args=args)
    if name in ORDER_ARGUMENT:
        args = ()
    return kept_reverse(f"aftersales_guest:{name}", args=[number, *args])
