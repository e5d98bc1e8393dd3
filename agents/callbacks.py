"""Signed callbacks to agents' shops (the integration API). Being written: see api/."""


def callback_queue(*, order_id: int) -> None:
    """Queue the 'order delivered' callback of an API order (filled in with the API)."""
    raise NotImplementedError
