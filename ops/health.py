"""Checks behind /health/ (django-health-check): what the load balancer and the compose
healthchecks ask before sending traffic to a web container."""

from __future__ import annotations

import dataclasses

from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from . import heartbeat


@dataclasses.dataclass
class Heartbeat(HealthCheck):
    """A heartbeat (ops/heartbeat.py) no older than settings.HEARTBEAT_MAX_AGE.

    ``source`` is a Celery queue (a worker consumes it, and it is not far behind) or ``beat``.
    """

    source: str = heartbeat.BEAT

    def run(self) -> None:
        age = heartbeat.heartbeat_age(source=self.source)
        if age is None:
            raise ServiceUnavailable(f"no heartbeat from {self.source}")
        if age > heartbeat.heartbeat_max_age():
            raise ServiceUnavailable(f"last heartbeat from {self.source} {age:.0f} s ago")
