"""Settings for the purchase benchmark: the product's own settings, plus the baseline URL.

The environment (DATABASE_URL, CELERY_BROKER_URL, VAR_DIR, DJANGO_DEBUG=0 ...) is set by
bench/purchase.py before anything imports this module.
"""

import os

from marketplace.settings import *  # noqa: F403
from marketplace.settings import LOGGING

ROOT_URLCONF = "bench.urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# The delivery emails' run still renders the buyer's emails; they are just not sent anywhere.
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
# Per-payment INFO lines would go to the terminal thousands of times a second.
LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": "WARNING"}}
# bench/steps.py places all its orders as one buyer, from one device, before paying any: the
# risk rules' order-burst limits and stock-hogging caps (issue 13) would refuse the sixth or
# eleventh. The checks still run on every checkout (their statements and their one Redis round
# trip are measured); only their limits are out of the benchmark's way.
RISK_HOLD_PRODUCT_ORDERS = RISK_HOLD_ORDERS = 1_000_000
RISK_HOLD_PRODUCT_CODES = RISK_HOLD_CODES = 1_000_000
RISK_RULES = {name: {**rule, "limit": 1_000_000_000} for name, rule in RISK_RULES.items()}  # noqa: F405
# Likewise the checkout's rate limits (one buyer, one address, hundreds of checkouts a minute).
RATE_LIMITS = {**RATE_LIMITS, "checkout": {"subject": (1_000_000_000, 600), "network": (1_000_000_000, 600)}}  # noqa: F405
# The balance scenario's agents call the API hundreds of times a second (one key each).
AGENT_API_RATE_PER_MINUTE = 1_000_000_000
# Admission control (marketplace.admission) is off in the benchmarks that measure throughput (a
# closed-loop client keeps more requests in flight than there are web processes, on purpose);
# bench/peak.py turns it on through the environment, as a deployment would.
ADMISSION_CHECKOUTS_PER_SECOND = int(os.environ.get("ADMISSION_CHECKOUTS_PER_SECOND") or 0)
ADMISSION_FULFILMENT_QUEUE_MAX = int(os.environ.get("ADMISSION_FULFILMENT_QUEUE_MAX") or 0)
ADMISSION_QUEUE_WAIT_MS = int(os.environ.get("ADMISSION_QUEUE_WAIT_MS") or 0)
# bench/skeleton.py's delivery task: loaded by the worker and routed as fulfil_order is.
CELERY_IMPORTS = ["bench.tasks"]
CELERY_TASK_ROUTES = {**CELERY_TASK_ROUTES, "bench.tasks.skeleton_deliver": {"queue": "fulfilment"}}  # noqa: F405
