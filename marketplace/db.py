"""A database connection the server dropped (restart, failover, pg_terminate_backend, an idle
timeout) surfaces as OperationalError or InterfaceError on the next statement, even with
CONN_HEALTH_CHECKS (the check runs once per request, before the drop). For an operation that
is safe to run twice, one retry on a fresh connection hides it.
"""

import functools
import logging

from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)


def connection_lost(exc: Exception | None = None) -> bool:
    """Whether ``exc`` (or the default connection's state) says the connection is gone, not
    merely that a statement failed. PostgreSQL reports a dropped connection with no SQLSTATE
    ("server closed the connection unexpectedly"), class 08 or 57P0x (terminated by an
    administrator, server shutting down); a closed connection used again is InterfaceError."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        code = getattr(exc.__cause__, "pgcode", None)
        if code is None or code.startswith(("08", "57P")):
            return True
    if connection.connection is None:
        return True
    try:
        return not connection.is_usable()
    except Exception:  # is_usable() itself may raise on a half-closed connection
        return True


def retry_once_if_connection_lost(func):
    """Run ``func`` again, once, on a new connection if the first run lost its connection.

    Only for idempotent operations (the payment notification pipeline, fulfilment, reads), and
    only outside a transaction: inside one, the caller's earlier work is gone with the connection.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if not connection.in_atomic_block:
            # CONN_HEALTH_CHECKS would send a ``SELECT 1`` before the first statement of each
            # request and task: a round trip that only turns a dead connection into a new one.
            # Here the first statement failing on a dead connection does the same (below), so
            # the check is skipped (marked done until the next request or task resets it).
            connection.health_check_done = True
        try:
            return func(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or not connection_lost(exc):
                raise
            log.warning("database connection lost in %s (%s); retrying once", func.__qualname__, exc)
            connection.close()
            return func(*args, **kwargs)

    return wrapper
