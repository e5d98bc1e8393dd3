"""Requests per minute per API key (``AGENT_API_RATE_PER_MINUTE``), counted in the cache.

With Redis away the count is not kept (the cache ignores its errors) and requests pass: the
limit fails open for the outage. That is deliberate: signatures, nonces (a database table,
so a replay is refused whatever Redis does), key allow-lists and balances are all checked in
the database, so only a correctly signing agent could exceed its rate meanwhile, and
refusing every agent's sales while Redis is down would be worse.
"""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from agents.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "agent_api"

    def get_rate(self) -> str:
        # Read per request, so the setting can change without a restart of this class.
        return f"{settings.AGENT_API_RATE_PER_MINUTE}/min"

    def get_cache_key(self, request, view) -> str | None:
        key = request.auth
        if not isinstance(key, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.key_id}
