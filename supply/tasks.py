from celery import shared_task

from . import services


@shared_task
def connection_balances_refresh() -> dict[int, str]:
    """Every enabled connection's balance at its supplier read again (beat, hourly)."""
    return services.connection_balances_refresh()
