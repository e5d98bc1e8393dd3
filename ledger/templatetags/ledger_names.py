"""``{{ account|account_name }}``: a ledger account's name in the reader's language (ledger.names)."""

from django import template

from ledger.names import account_name as name_of

register = template.Library()


@register.filter
def account_name(account) -> str:
    return name_of(account)
