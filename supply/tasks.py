from celery import shared_task

from marketplace import tasklimits

from . import services


@shared_task(**tasklimits.BATCH)
def refresh_upstream_availability() -> int:
    """Beat, every 30 s: the supplier's availability of every upstream product read again, so
    the displayed stock (at most a minute old) rarely makes a page wait on a supplier."""
    return services.upstream_connections_refresh()


@shared_task(**tasklimits.BATCH)
def connection_balances_refresh() -> dict[int, str]:
    """Every enabled connection's balance at its supplier read again (beat, hourly)."""
    return services.connection_balances_refresh()
