from health_check.views import HealthCheckView


class HealthView(HealthCheckView):
    """django-health-check's view, answering 503 (not 500) when a check fails: the load
    balancer's signal to stop sending traffic, not a server error to log and page about."""

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response
