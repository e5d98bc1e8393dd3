"""Settings for the purchase benchmark: the product's own settings, plus the baseline URL.

The environment (DATABASE_URL, CELERY_BROKER_URL, VAR_DIR, DJANGO_DEBUG=0 ...) is set by
bench/purchase.py before anything imports this module.
"""

from marketplace.settings import *  # noqa: F403
from marketplace.settings import LOGGING

ROOT_URLCONF = "bench.urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# Fulfilment still renders the buyer's email; it is just not sent anywhere.
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
# Per-payment INFO lines would go to the terminal thousands of times a second.
LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": "WARNING"}}
