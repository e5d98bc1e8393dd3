"""System checks of compliance's settings (``manage.py check``, run at every start)."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def realname_provider_check(app_configs=None, **kwargs):
    """The sandbox real-name provider answers "match" to made-up people: an error outside
    development (DEBUG off, or DJANGO_PRODUCTION=1). The HTTP provider needs its URL, key and
    secret."""
    from .realname import HTTP, SANDBOX

    errors = []
    kind = getattr(settings, "REALNAME_PROVIDER", SANDBOX)
    if kind == SANDBOX and (settings.PRODUCTION or not settings.DEBUG):
        errors.append(
            Error(
                "The sandbox real-name provider cannot be used in production.",
                hint="Set REALNAME_PROVIDER=http with REALNAME_URL, REALNAME_APP_KEY and REALNAME_APP_SECRET.",
                id="compliance.E001",
            )
        )
    elif kind == HTTP:
        missing = [
            n for n in ("REALNAME_URL", "REALNAME_APP_KEY", "REALNAME_APP_SECRET") if not getattr(settings, n, "")
        ]
        if missing:
            errors.append(
                Error(
                    f"The real-name provider is not configured: set {', '.join(missing)}.",
                    id="compliance.E002",
                )
            )
        elif settings.PRODUCTION and not settings.REALNAME_URL.startswith("https://"):
            errors.append(Error("REALNAME_URL must be an https:// address in production.", id="compliance.E003"))
    elif kind not in (SANDBOX, HTTP):
        errors.append(Error(f"REALNAME_PROVIDER must be 'sandbox' or 'http', not {kind!r}.", id="compliance.E004"))
    return errors
