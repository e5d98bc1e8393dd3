import hmac
import ipaddress
import os

import prometheus_client
from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from health_check.views import HealthCheckView
from prometheus_client import multiprocess

from marketplace import gunicorn_conf  # noqa: F401  (its counter, at 0 where gunicorn did not load it)
from marketplace.http import client_ip

from .metrics import SaleCollector


class HealthView(HealthCheckView):
    """django-health-check's view, answering 503 (not 500) when a check fails: the load
    balancer's signal to stop sending traffic, not a server error to log and page about."""

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response


# The business metrics have a registry of their own: collected only when /metrics is asked.
_sale_registry = prometheus_client.CollectorRegistry(auto_describe=False)
_sale_registry.register(SaleCollector())


def _ip_allowed(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


def _token_valid(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())


@never_cache
def metrics(request):
    """Prometheus' scrape: a bearer token (settings.METRICS_TOKEN) or an allowed address
    (METRICS_ALLOWED_IPS); anyone else is told there is nothing here."""
    if not (_token_valid(request) or _ip_allowed(client_ip(request))):
        raise Http404
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # gunicorn's processes each count their own requests: merged from their files.
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    body = prometheus_client.generate_latest(registry) + prometheus_client.generate_latest(_sale_registry)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
