"""Small text forms shared by every app: how an email address is compared, and how a secret
is shown masked."""


def email_normalise(email: str) -> str:
    """An address as stored and compared (guest orders, credit events, restock alerts): stripped,
    lower case."""
    return (email or "").strip().lower()


def mask_ends(text: str, fill: str = "*") -> str:
    """The first and last characters, the rest as ``fill``: 1****************X, 张*丰. A
    two-character text keeps its first only (张*)."""
    if not text:
        return ""
    if len(text) <= 2:
        return text[0] + fill * (len(text) - 1)
    return text[0] + fill * (len(text) - 2) + text[-1]
