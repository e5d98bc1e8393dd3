from django.urls import path

from .views import HealthView, metrics

# /health/: everything a sale needs. The database and the Redis cache, beat, and a worker on the
# `fulfilment` and `default` queues. The notifications, callbacks and reports queues are left
# out: a slow report or a flood of emails must not take every web container out of rotation
# (their heartbeats' ages are in /metrics, for alerts).
SALE_CHECKS = (
    "health_check.checks.Database",
    "health_check.checks.Cache",
    ("ops.health.Heartbeat", {"source": "beat"}),
    ("ops.health.Heartbeat", {"source": "fulfilment"}),
    ("ops.health.Heartbeat", {"source": "default"}),
)
# /health/web/: this web container alone (database and cache reachable), for the container's own
# healthcheck: a stopped worker is not a reason to restart web containers.
WEB_CHECKS = ("health_check.checks.Database", "health_check.checks.Cache")

urlpatterns = [
    path("health/", HealthView.as_view(checks=SALE_CHECKS), name="ops_health"),
    path("health/web/", HealthView.as_view(checks=WEB_CHECKS), name="ops_health_web"),
    path("metrics", metrics, name="ops_metrics"),
]
