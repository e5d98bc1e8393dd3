"""Settings for every environment, read from the environment.

The embedded default (no variables set) is a development setup that needs no server:
SQLite, a filesystem Celery broker and keys generated once under ``var/``.
``DJANGO_PRODUCTION=1`` switches to production: every secret must then come from the
environment, and nothing unsafe has a default.
"""

import ipaddress
import os
import re
import secrets
from decimal import Decimal
from pathlib import Path
from typing import overload

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
# Empty means the default, as for every variable (.env.example): Path("") would be the cwd.
VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: None = None) -> str | None: ...
def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


PRODUCTION = env_bool("DJANGO_PRODUCTION")
DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG cannot be on with DJANGO_PRODUCTION=1")


def _local_secret(filename: str, make) -> str:
    """A development secret generated once and kept under var/ (outside git)."""
    if PRODUCTION:
        raise ImproperlyConfigured(f"{filename} must come from the environment in production")
    path = VAR_DIR / "keys" / filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def required(name: str, dev_file: str, make) -> str:
    value = env(name)
    if value is None:
        if PRODUCTION:
            raise ImproperlyConfigured(f"Set {name} in the environment (DJANGO_PRODUCTION=1)")
        value = _local_secret(dev_file, make)
    return value


SECRET_KEY = required("DJANGO_SECRET_KEY", "django_secret_key", lambda: secrets.token_urlsafe(50))
# Rotating DJANGO_SECRET_KEY: the old key goes here (comma-separated) while what it signed is
# still out there: the links in guests' emails (GUEST_LINK_MAX_AGE_DAYS), members' sessions,
# password-reset links, device cookies. Without it, a rotation signs everyone out and every
# emailed order link opens nothing.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")
# Card codes and other secrets at rest: comma-separated Fernet keys, newest first.
# Add a new key in front, run `manage.py rotate_card_keys` and `keys_check --primary-only`,
# then drop the old one (README: every secret they protect is listed in marketplace/crypto.py).
CARD_CODE_KEYS = (required("CARD_CODE_KEYS", "card_code_keys", lambda: Fernet.generate_key().decode())).split(",")
# Keyed hash of secrets for duplicate detection; independent of the rotating Fernet keys.
STOCK_HASH_KEY = required("STOCK_HASH_KEY", "stock_hash_key", lambda: secrets.token_hex(32))

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# How many trusted reverse proxies stand in front of gunicorn (1 behind nginx): client_ip()
# then reads the client's address from X-Forwarded-For instead of the proxy's.
NUM_PROXIES = int(env("NUM_PROXIES", "0"))
# Absolute base URL for links in emails and gateway callbacks.
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "csp",
    "marketplace",
    "accounts",
    "ledger",
    "compliance",
    "legal",
    "risk",
    "agents",
    "catalog",
    "marketing",
    "orders",
    "payments",
    "aftersales",
    "api",
    "trust",
    "rights",
    "reports",
    "referrals",
    "supply",
    "ops",  # the health endpoint, heartbeats, Prometheus metrics (issue 17)
    "health_check",
    "django_prometheus",
]

MIDDLEWARE = [
    # Request latency, counts by view and status for /metrics (django-prometheus; its pair is last).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # /health/ and /metrics asked for by a container's address (a load balancer, Prometheus'
    # service discovery): answered whatever the Host (marketplace/middleware.py).
    "marketplace.middleware.ProbeHostMiddleware",
    # X-Request-ID: taken from the proxy or made, on every log line of the request and its tasks.
    "marketplace.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every answer (the policy is under "Security" below): django-csp's,
    # with the header built once per process (marketplace/cspheader.py).
    "marketplace.cspheader.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A request that waited too long for a web process (a burst past capacity): 429 at once,
    # with the security headers above, before sessions, users or the database.
    "marketplace.admission.OverloadMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's, without reading a language from paths that have none (marketplace/middleware.py).
    "marketplace.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's, with sessions of the backends' previous paths renamed (accounts/middleware.py).
    "accounts.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # The device identifier (a signed cookie id plus the user agent's hash): request.device_id.
    "risk.middleware.DeviceMiddleware",
    # Staff sessions: a second factor before anything but setting one up, shorter lifetimes.
    "compliance.middleware.StaffSessionMiddleware",
    # A member who has not accepted the agreements in force is sent to accept them (legal/middleware.py).
    "legal.middleware.AgreementAcceptMiddleware",
    # A service's refusal a page view let through: 404/403, or its message (marketplace/errors.py).
    "marketplace.errors.ServiceErrorMiddleware",
    # Last, so it sees a view's exceptions first: a dropped database connection retried
    # (reads), a database or broker outage answered 503 instead of 500.
    "marketplace.middleware.ServiceFaultMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "marketplace.context_processors.site",
                "aftersales.services.promises.promises",
                "payments.selectors.pay_channels_context",
                "compliance.selectors.qualifications_context",
                "legal.selectors.legal_context",
                # Last: a page kept for anonymous visitors renders a placeholder CSRF token.
                "marketplace.pagecache.csrf_placeholder",
            ],
            # ``money`` and ``order_no``: how amounts and order numbers are shown, everywhere;
            # ``extends`` and ``url``: Django's, with what they look up kept (templatetags/kept.py).
            "builtins": ["marketplace.templatetags.display", "marketplace.templatetags.kept"],
            # ``{% load i18n %}``: Django's library with literal ``{% translate %}`` texts kept per
            # language (templatetags/i18n_kept.py).
            "libraries": {"i18n": "marketplace.templatetags.i18n_kept"},
        },
    },
]
# templates.W003 warns that two modules answer to one {% load %} name. The one such name here is
# ``i18n``, replaced on purpose above (the engine's "libraries" win over the installed ones);
# tests/test_kept_templatetags.py runs the same comparison and fails on any other duplicate.
SILENCED_SYSTEM_CHECKS = ["templates.W003"]


# --- Database -------------------------------------------------------------------------
def env_pg_duration(name: str) -> str:
    """A PostgreSQL duration ("5s", "500ms", "2min"; a bare number is milliseconds), or "" (unset)."""
    value = (env(name, "") or "").strip()
    if value and not re.fullmatch(r"\d+(us|ms|s|min|h|d)?", value):
        raise ImproperlyConfigured(f'{name} is a PostgreSQL duration such as "5s" or "500ms", not {value!r}')
    return value


if env("DATABASE_URL"):

    def _postgres(url: str) -> dict:
        """One alias's settings from its URL; the primary and its replica are set up alike."""
        # DB_CONN_MAX_AGE: seconds a process keeps its connection (0: one per request). Behind
        # PgBouncer a kept connection costs PostgreSQL nothing while idle, so keep it.
        database = dj_database_url.parse(url, conn_max_age=int(env("DB_CONN_MAX_AGE", "60")), conn_health_checks=True)
        if env_bool("DB_TRANSACTION_POOLING"):
            # PgBouncer in transaction mode (docker-compose.yml): a server session lasts only one
            # transaction, so no server-side cursors (QuerySet.iterator() would lose its cursor)
            # and nothing session-level (the code uses only transaction-scoped advisory locks).
            # The database's timezone must stay UTC, or Django would SET it per connection.
            database["DISABLE_SERVER_SIDE_CURSORS"] = True
        # PostgreSQL's lock_timeout and statement_timeout for every connection of this process,
        # sent as startup options. docker-compose.yml sets DB_LOCK_TIMEOUT on the one-shot
        # migration: an ALTER TABLE queued behind a long transaction gives up after it, instead
        # of making every request that touches the table queue behind the ALTER (README,
        # "Upgrading without downtime"). PgBouncer refuses startup options: not with pooling.
        timeouts = {
            "lock_timeout": env_pg_duration("DB_LOCK_TIMEOUT"),
            "statement_timeout": env_pg_duration("DB_STATEMENT_TIMEOUT"),
        }
        options = " ".join(f"-c {name}={value}" for name, value in timeouts.items() if value)
        if options and env_bool("DB_TRANSACTION_POOLING"):
            raise ImproperlyConfigured(
                "DB_LOCK_TIMEOUT and DB_STATEMENT_TIMEOUT are for a direct connection (the migration): "
                "PgBouncer (DB_TRANSACTION_POOLING) refuses the startup options that carry them"
            )
        if options:
            database.setdefault("OPTIONS", {})["options"] = options
        return database

    DATABASES = {"default": _postgres(env("DATABASE_URL", ""))}
    if env("REPLICA_DATABASE_URL"):
        # A streaming replica for the heavy readers (regulator reports, trust figures): only the
        # reads inside marketplace.dbrouter.replica_reads() go there (README, "Read replicas").
        DATABASES["replica"] = {**_postgres(env("REPLICA_DATABASE_URL", "")), "TEST": {"MIRROR": "default"}}
elif PRODUCTION:
    raise ImproperlyConfigured("Set DATABASE_URL (PostgreSQL) in production")
else:
    import sqlite3

    if sqlite3.sqlite_version_info < (3, 35):  # the stock claim uses UPDATE ... RETURNING
        raise ImproperlyConfigured(f"SQLite 3.35 or newer is needed, this Python has {sqlite3.sqlite_version}")
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # IMMEDIATE: a writing transaction takes the write lock at BEGIN, so concurrent
                # web and worker processes queue instead of failing with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DATABASE_ROUTERS = ["marketplace.dbrouter.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache ----------------------------------------------------------------------------
if env("REDIS_CACHE_URL"):
    # django-redis for IGNORE_EXCEPTIONS: with Redis away a read is a miss and a write is
    # skipped (logged), so pages, sessions and checkout keep working from the database.
    # Short socket timeouts: an unreachable Redis costs a request a second, not a hang.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": env("REDIS_CACHE_URL"),
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    # Sessions read from the shared cache, written through to the database (the database
    # answers when Redis is away; cache entries are short-lived, see marketplace.sessions).
    SESSION_ENGINE = "marketplace.sessions"
    SESSION_CACHE_SECONDS = int(env("SESSION_CACHE_SECONDS", "300"))
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Heartbeats of Celery beat and of each queue's worker (ops/heartbeat.py), read by /health/:
# shared by every process, so Redis in production and a folder under var/ without it.
if env("REDIS_CACHE_URL"):
    CACHES["heartbeat"] = {**CACHES["default"], "KEY_PREFIX": "ops"}
else:
    CACHES["heartbeat"] = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "heartbeat"),
    }
# Anonymous visitors' catalogue, product and storefront pages are kept this many seconds per
# process (marketplace/pagecache.py): the stock and prices they show are never older. 0: off.
PAGE_CACHE_SECONDS = int(env("PAGE_CACHE_SECONDS", "3"))
# A heartbeat older than this fails /health/ (they are sent every 30 s: marketplace/celery.py).
HEARTBEAT_MAX_AGE = int(env("HEARTBEAT_MAX_AGE", "120"))

# --- Metrics (/metrics, ops/views.py) -------------------------------------------------------
# Prometheus sends "Authorization: Bearer <METRICS_TOKEN>", or scrapes from an address listed in
# METRICS_ALLOWED_IPS (addresses or networks, comma-separated; the client address as
# marketplace.http.client_ip sees it). Anyone else gets a 404. Development allows this machine.
METRICS_TOKEN = env("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "" if PRODUCTION else "127.0.0.1,::1")
for _net in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {_net!r} is not an address or network") from _exc

# --- Celery ---------------------------------------------------------------------------
# Redis hands a message its worker has not acknowledged to another worker after this many seconds
# (CELERY_BROKER_TRANSPORT_OPTIONS below). A task retried with a countdown waits in the worker that
# fetched it, unacknowledged for the whole countdown and (acks_late) its run: a countdown plus run
# time past the timeout runs the task again in another worker, once per timeout elapsed
# (kombu's QoS.restore_visible; Celery's docs, "Redis: visibility timeout"). So no task waits
# longer than CELERY_RETRY_COUNTDOWN_MAX before a retry (tests/test_task_retries.py checks every
# task), and the timeout keeps at least as much again for the retry's own run.
CELERY_RETRY_COUNTDOWN_MAX = 300
CELERY_VISIBILITY_TIMEOUT = int(env("CELERY_VISIBILITY_TIMEOUT", "600"))
# (The tests' workers use a few seconds, to see a killed worker's message come back.)
if PRODUCTION and CELERY_VISIBILITY_TIMEOUT < 2 * CELERY_RETRY_COUNTDOWN_MAX:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT must be at least {2 * CELERY_RETRY_COUNTDOWN_MAX} seconds: a task retried "
        f"{CELERY_RETRY_COUNTDOWN_MAX} s later would otherwise be run again by another worker"
    )
# A task that runs past the timeout is run again, at once, by another worker: a slow import,
# report or sweep would run twice in parallel. So every task has a hard time limit (the pool kills
# it) and a soft one below it (SoftTimeLimitExceeded is raised in the task, which can stop at a safe
# point), per class of task in marketplace/tasklimits.py, none above these defaults: the longest a
# batch may run. A retried task waits up to CELERY_RETRY_COUNTDOWN_MAX unacknowledged and then
# runs, so the hard limit is 4/5 of what the timeout leaves after that wait (240 s of 600).
# CELERY_TASK_TIME_LIMIT (seconds) may set it lower; production refuses one that does not fit.
# (A visibility timeout shorter than 2 * CELERY_RETRY_COUNTDOWN_MAX, refused in production, is the
# tests' workers' few seconds: their tasks keep production's limits unless the test sets its own.)
_RUN_BUDGET = max(CELERY_VISIBILITY_TIMEOUT, 2 * CELERY_RETRY_COUNTDOWN_MAX) - CELERY_RETRY_COUNTDOWN_MAX
CELERY_TASK_TIME_LIMIT = int(env("CELERY_TASK_TIME_LIMIT", str(_RUN_BUDGET * 4 // 5)))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT * 3 // 4  # a quarter of it left to finish cleanly
if CELERY_TASK_TIME_LIMIT <= 0 or (
    PRODUCTION and CELERY_RETRY_COUNTDOWN_MAX + CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT
):
    raise ImproperlyConfigured(
        f"CELERY_TASK_TIME_LIMIT must be above 0 and, with a retry's {CELERY_RETRY_COUNTDOWN_MAX} s wait, below"
        f" CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT} s): a task running longer would be run again"
        " by another worker at the same time"
    )
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default: a broker that is a folder. No server, real separate worker.
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu keeps its exchange table here; without it, a ``control/`` folder in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # the filesystem transport has no fanout
    # kombu's, with each message written whole before a worker can see it (marketplace/fsbroker.py).
    CELERY_BROKER_TRANSPORT = "marketplace.fsbroker:Transport"
else:
    # Unacknowledged messages (a worker killed mid-task) come back after this many seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # An unreachable broker fails a publish in about a second instead of hanging a request.
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
    }
# A publish with the broker away gives up quickly (what must happen is recorded in the
# database, and a sweeper publishes it again: orders.tasks.deliver_due_orders and the like).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# Celery's Django fix-up closes the database connection around every task unless this is set:
# a new PostgreSQL connection per task costs more than the task. Connections are kept, and
# marketplace.celery closes only stale or broken ones (CONN_MAX_AGE, health checks) instead.
CELERY_DB_REUSE_MAX = 10**9
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery reads these four on every publish (Task.apply_async, send_task, the producer pool).
# Its defaults, spelled out: a setting Django does not have is looked up under each of its
# spellings, each miss raising and catching an AttributeError through Django's settings
# before Celery's default answers (about a sixth of a publish's CPU); a defined one is one hit.
CELERY_TASK_ALWAYS_EAGER = False  # the tests' conftest sets the app's own configuration instead
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_TASK_REPR_MAXLEVELS = 3
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = None

# Queues (issue 17): a flood of emails, callbacks or a long report must not delay deliveries.
# Every queue is declared, so a worker started without -Q (dev.py, the tests' real worker)
# consumes all of them; production runs a worker for `fulfilment` alone and one for the rest
# (docker-compose.yml). Tasks not routed below go to `default`.
QUEUE_NAMES = ("fulfilment", "notifications", "callbacks", "reports", "default")
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in QUEUE_NAMES]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
CELERY_TASK_ROUTES = {
    # The sale's critical path: delivery, and the sweeper that queues late deliveries again.
    "orders.tasks.fulfil_order": {"queue": "fulfilment"},
    "orders.tasks.deliver_due_orders": {"queue": "fulfilment"},
    # Emails and other messages to people.
    "orders.tasks.send_delivery_emails": {"queue": "notifications"},
    "orders.tasks.sweep_delivery_emails": {"queue": "notifications"},
    "orders.tasks.notify_refund_pending": {"queue": "notifications"},
    "orders.tasks.send_lookup_link": {"queue": "notifications"},
    "payments.tasks.refund_notify": {"queue": "notifications"},
    "aftersales.tasks.sla_notify": {"queue": "notifications"},
    "accounts.tasks.warn_login_locked": {"queue": "notifications"},
    "catalog.tasks.restock_notify": {"queue": "notifications"},
    "catalog.tasks.restock_alerts_sweep": {"queue": "notifications"},
    "compliance.tasks.qualifications_warn_expiring": {"queue": "notifications"},
    "rights.tasks.reviews_warn_expiring": {"queue": "notifications"},
    # Calls out to other systems that may be slow or down: agents' shops, payment gateways.
    "orders.tasks.send_callback": {"queue": "callbacks"},
    "orders.tasks.send_due_callbacks": {"queue": "callbacks"},
    # Suppliers' systems (issue 16): placing and asking about supplier orders, availability.
    "orders.tasks.advance_upstream": {"queue": "callbacks"},
    "orders.tasks.upstream_due_orders": {"queue": "callbacks"},
    "supply.tasks.refresh_upstream_availability": {"queue": "callbacks"},
    "payments.tasks.attempt_check": {"queue": "callbacks"},
    "payments.tasks.attempts_query_due": {"queue": "callbacks"},
    "payments.tasks.attempts_close_expired": {"queue": "callbacks"},
    "payments.tasks.refund_execute": {"queue": "callbacks"},
    "payments.tasks.refunds_retry_due": {"queue": "callbacks"},
    "payments.tasks.payout_execute": {"queue": "callbacks"},
    "payments.tasks.payouts_check_due": {"queue": "callbacks"},
    "supply.tasks.connection_balances_refresh": {"queue": "callbacks"},
    # Long jobs: reports, bills, imports, scans over many rows.
    "reports.tasks.*": {"queue": "reports"},
    "trust.tasks.*": {"queue": "reports"},
    "payments.tasks.bill_reconcile": {"queue": "reports"},
    "payments.tasks.bills_reconcile_yesterday": {"queue": "reports"},
    "orders.tasks.supply_reconcile": {"queue": "reports"},
    "orders.tasks.supply_reconcile_yesterday": {"queue": "reports"},
    "catalog.tasks.import_batch": {"queue": "reports"},
    "orders.tasks.risk_clusters_scan": {"queue": "reports"},
}
# A publish declares nothing (kombu's maybe_declare binds a copy of the queue and its exchange to
# the channel on every publish: about a sixth of a publish's CPU, bench/publish.py). Celery sends a
# task to its queue through the default exchange, which on Redis and the filesystem transport is
# the list or folder named after the queue, declared or not; the workers declare their queues
# when they start consuming. (Routes' options are apply_async's, which passes this to kombu.)
CELERY_TASK_ROUTES = {name: {**route, "declare": []} for name, route in CELERY_TASK_ROUTES.items()}

# --- Auth (django-allauth) ------------------------------------------------------------
# Django's and allauth's, whose get_user reads the session's user with SQL built once
# (accounts/backends.py); sessions of their former paths are renamed by the middleware.
AUTHENTICATION_BACKENDS = [
    "accounts.backends.ModelBackend",
    "accounts.backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_LOGIN_ON_PASSWORD_RESET = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_USER_DISPLAY = "accounts.models.user_display"  # the email, not the generated username
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "account_login"
# Failed logins (accounts.services): allauth's own "login_failed" limit keys on the email alone,
# so five wrong passwords from anywhere locked the owner out. It is replaced by three locks, kept
# in the cache: one account from one client (IP, IPv6 by /64), one client across all accounts
# (spraying), and one account from everywhere (distributed guessing; the owner is emailed).
# Each: N failures within WINDOW minutes of the first lock it for LOCK minutes. The admin's
# login is routed through allauth's (marketplace/urls.py), so these are the only password door.
# risk.adapter's subclass of accounts.adapter.AccountAdapter: sign-ups screened by the
# blacklist and the registration rules (risk sits above accounts in the layers).
# risk screens sign-ups; referrals (a subclass of risk's) records who invited the new member.
ACCOUNT_ADAPTER = "referrals.adapter.ReferralAccountAdapter"
# Sign-up asks for the acceptance of the user agreement and privacy policy in force (legal.forms).
ACCOUNT_FORMS = {"signup": "legal.forms.SignupForm"}
# "login_failed" no longer counts passwords (accounts.adapter does not call allauth's
# pre_authenticate): allauth.mfa alone reads it, keyed on the user, for second-factor codes.
# MFA_FAILURE_LIMIT codes a user may try within MFA_FAILURE_WINDOW_MINUTES (a success gives its
# try back): a six-digit code cannot be guessed. Without it, codes could be tried without end.
MFA_FAILURE_LIMIT = int(env("MFA_FAILURE_LIMIT", "5"))
MFA_FAILURE_WINDOW_MINUTES = int(env("MFA_FAILURE_WINDOW_MINUTES", "5"))
ACCOUNT_RATE_LIMITS = {"login_failed": f"{MFA_FAILURE_LIMIT}/{MFA_FAILURE_WINDOW_MINUTES * 60}s/key"}


def env_positive(name: str, default: int) -> int:
    value = int(env(name, str(default)))
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1")
    return value


LOGIN_CLIENT_FAILURE_LIMIT = env_positive("LOGIN_CLIENT_FAILURE_LIMIT", 5)
LOGIN_CLIENT_WINDOW_MINUTES = env_positive("LOGIN_CLIENT_WINDOW_MINUTES", 5)
LOGIN_CLIENT_LOCK_MINUTES = env_positive("LOGIN_CLIENT_LOCK_MINUTES", 5)
LOGIN_IP_FAILURE_LIMIT = env_positive("LOGIN_IP_FAILURE_LIMIT", 30)
LOGIN_IP_WINDOW_MINUTES = env_positive("LOGIN_IP_WINDOW_MINUTES", 15)
LOGIN_IP_LOCK_MINUTES = env_positive("LOGIN_IP_LOCK_MINUTES", 15)
# 30 (issue 13: "30 wrong passwords for one account lock it"; it was 50). One patient client
# already gets about 5 tries per 5-minute client lock, so 50 did not keep a stranger from
# reaching this lock within the hour either; it only allowed 20 more guesses. The owner keeps
# the way out: the warning email's password reset lifts the lock.
LOGIN_ACCOUNT_FAILURE_LIMIT = env_positive("LOGIN_ACCOUNT_FAILURE_LIMIT", 30)
LOGIN_ACCOUNT_WINDOW_MINUTES = env_positive("LOGIN_ACCOUNT_WINDOW_MINUTES", 60)
LOGIN_ACCOUNT_LOCK_MINUTES = env_positive("LOGIN_ACCOUNT_LOCK_MINUTES", 30)


# --- Rate limits (issue 13): "<limit>/<window seconds>", past the limit 429 with Retry-After ----
def env_rate(name: str, default: str) -> tuple[int, int]:
    """A limit and its window from the environment: "20/600" is 20 hits within 600 seconds."""
    text = env(name, default)
    try:
        limit, window = (int(part) for part in text.split("/"))
    except ValueError:
        raise ImproperlyConfigured(f'{name} must read "<limit>/<window seconds>", e.g. "20/600"') from None
    if limit < 1 or window < 1:
        raise ImproperlyConfigured(f"{name}: the limit and the window must be at least 1")
    return limit, window


# Counted by marketplace.ratelimit (the cache: Redis in production) per client network (IPv4
# address, IPv6 /64) and per subject: the account, or for a guest the email (checkout) or the
# order (reveal, tickets). Generous: a buyer in normal use never meets them; a script does.
RATE_LIMITS = {
    # Placing orders, on the platform and in storefronts (every POST, whatever its outcome).
    "checkout": {
        "subject": env_rate("RATE_CHECKOUT_ACCOUNT", "20/600"),
        "network": env_rate("RATE_CHECKOUT_NETWORK", "60/600"),
    },
    # Revealing codes, one POST per code (a member's every order; a guest's per order).
    "reveal": {
        "subject": env_rate("RATE_REVEAL_ACCOUNT", "200/600"),
        "network": env_rate("RATE_REVEAL_NETWORK", "300/600"),
    },
    # Opening after-sales tickets.
    "ticket": {
        "subject": env_rate("RATE_TICKET_ACCOUNT", "20/3600"),
        "network": env_rate("RATE_TICKET_NETWORK", "60/3600"),
    },
    # Rights holders' notices (rights.views.notice_new): each takes a product down at once, so a
    # script must not file them by the hundred. Subject: the notifier's email.
    "rights_notice": {
        "subject": env_rate("RATE_RIGHTS_NOTICE_EMAIL", "5/3600"),
        "network": env_rate("RATE_RIGHTS_NOTICE_NETWORK", "10/3600"),
    },
    # Restock alerts' "notify me" form (orders.views.restock): each guest subscription emails a
    # confirmation link, so per address and per client network. Subject: the account or email.
    "restock": {
        "subject": env_rate("RATE_RESTOCK_SUBJECT", "5/3600"),
        "network": env_rate("RATE_RESTOCK_NETWORK", "30/3600"),
    },
    # The cashier's QR code drawn on the server for a browser without JavaScript (payments.views.
    # qr_image, signed tokens only; one per cashier page shown). Per client network only.
    "qr_image": {
        "network": env_rate("RATE_QR_IMAGE_NETWORK", "120/600"),
    },
}
# Admission control (marketplace.admission, issue 17): in a burst past what the platform can
# place and deliver, checkouts (platform, guest, storefront, the API's order creation) are
# refused at once with 429 and Retry-After instead of queueing into timeouts. At most this many
# checkouts per second across every web process (counted in the shared cache), and none while
# more than this many deliveries wait in the fulfilment queue (read from the broker at most
# once per ADMISSION_QUEUE_READ_SECONDS per process). 0 turns a test off. Set the rate from a
# load test of the deployment (bench/peak.py). Payment notifications are never refused.


def env_count(name: str, default: int) -> int:
    value = int(env(name, str(default)))
    if value < 0:
        raise ImproperlyConfigured(f"{name} must be 0 (off) or more")
    return value


ADMISSION_CHECKOUTS_PER_SECOND = env_count("ADMISSION_CHECKOUTS_PER_SECOND", 200)
ADMISSION_FULFILMENT_QUEUE_MAX = env_count("ADMISSION_FULFILMENT_QUEUE_MAX", 500)
ADMISSION_QUEUE_READ_SECONDS = float(env("ADMISSION_QUEUE_READ_SECONDS", "1"))
ADMISSION_RETRY_AFTER = env_positive("ADMISSION_RETRY_AFTER", 5)
# Overload (marketplace.admission.OverloadMiddleware): a request that waited longer than this for
# a web process (the kernel's listen queue, read from the socket) is answered 429 at once, before
# sessions or the database: a page that cannot start within 200 ms cannot be served within the
# 300 ms the peak asks for, and working on it would only make every later request later. 0 = off.
ADMISSION_QUEUE_WAIT_MS = env_count("ADMISSION_QUEUE_WAIT_MS", 200)
# Never refused for waiting: payment notifications (money already taken), suppliers' callbacks on
# paid orders, health checks, metrics.
ADMISSION_OVERLOAD_EXEMPT = ("/payments/notify/", "/supply/callback/", "/health", "/metrics")
# Restock alerts (catalog.services.restock_notify_run): emails per task run (the next run is
# queued for the rest), how long a run's claim on a row holds before another run may take it
# over (a worker killed mid-way), and how long a guest's confirmation link works.
RESTOCK_ALERT_BATCH = env_positive("RESTOCK_ALERT_BATCH", 100)
RESTOCK_ALERT_CLAIM_MINUTES = env_positive("RESTOCK_ALERT_CLAIM_MINUTES", 10)
RESTOCK_CONFIRM_DAYS = env_positive("RESTOCK_CONFIRM_DAYS", 3)
# allauth's own limits, set here rather than left to its defaults, counted in the same cache
# (ACCOUNT_RATE_LIMITS: "<n>/<seconds>s/<ip|key|user>"; "ip" is allauth's client, IPv6 by /64,
# through accounts.adapter.get_client_ip). Past one, allauth answers with the project's 429
# page (marketplace.urls.handler429: Chinese by default, Retry-After).
_SIGNUP = env_rate("RATE_SIGNUP_NETWORK", "20/600")
_RESET_NETWORK = env_rate("RATE_RESET_PASSWORD_NETWORK", "20/600")
_RESET_EMAIL = env_rate("RATE_RESET_PASSWORD_EMAIL", "5/3600")
_RESET_KEY = env_rate("RATE_RESET_PASSWORD_KEY_NETWORK", "30/600")
_LOGIN = env_rate("RATE_LOGIN_NETWORK", "30/60")
_CONFIRM = env_rate("RATE_CONFIRM_EMAIL", "1/180")
ACCOUNT_RATE_LIMITS = {
    **ACCOUNT_RATE_LIMITS,
    "signup": f"{_SIGNUP[0]}/{_SIGNUP[1]}s/ip",
    # The reset request: per client, and per email asked for (each is an email sent).
    "reset_password": f"{_RESET_NETWORK[0]}/{_RESET_NETWORK[1]}s/ip,{_RESET_EMAIL[0]}/{_RESET_EMAIL[1]}s/key",
    # The page the reset email links to (its key in the URL).
    "reset_password_from_key": f"{_RESET_KEY[0]}/{_RESET_KEY[1]}s/ip",
    # Login posts per client, whatever their outcome (wrong passwords have the locks above).
    "login": f"{_LOGIN[0]}/{_LOGIN[1]}s/ip",
    # Verification emails per address (a resend waits this long).
    "confirm_email": f"{_CONFIRM[0]}/{_CONFIRM[1]}s/key",
}


# --- Risk control (issue 13): anomaly rules, stock-hogging caps, blacklists -----------------
def env_rule(name: str, default: str) -> dict:
    """A rule's threshold and action: "<limit>/<window seconds> <action>", e.g. "10/3600 hold".
    Actions: log (an alert only), captcha (a solved proof-of-work challenge needed until the window
    ends: risk/captcha.py), refuse (refused until the window ends), hold (refused, and the subject
    held until staff review the alert), block (refused, and blocked RISK_BLOCK_MINUTES)."""
    text = env(name, default)
    try:
        counts, action = text.split()
        limit, window = (int(part) for part in counts.split("/"))
    except ValueError:
        raise ImproperlyConfigured(f'{name} must look like "10/3600 hold", not {text!r}') from None
    if limit < 1 or window < 1 or action not in {"log", "captcha", "refuse", "hold", "block"}:
        raise ImproperlyConfigured(f"{name}: limit and window at least 1, action log|captcha|refuse|hold|block")
    return {"limit": limit, "window": window, "action": action}


RISK_RULES = {
    # Registrations (counted when a sign-up passes its form's checks).
    "signup_ip": env_rule("RISK_RULE_SIGNUP_IP", "10/3600 hold"),
    "signup_network": env_rule("RISK_RULE_SIGNUP_NETWORK", "30/3600 refuse"),  # IPv4 /24, IPv6 /64
    "signup_device": env_rule("RISK_RULE_SIGNUP_DEVICE", "3/86400 hold"),
    # Orders placed (pages and storefronts; the signed API has its per-key limit instead).
    "order_burst_buyer": env_rule("RISK_RULE_ORDER_BURST_BUYER", "10/600 refuse"),  # member or guest email
    "order_burst_ip": env_rule("RISK_RULE_ORDER_BURST_IP", "30/600 refuse"),
    "order_burst_device": env_rule("RISK_RULE_ORDER_BURST_DEVICE", "10/600 refuse"),
    # Payments that ended unpaid (the trade closed at its gateway: the active query) per buyer
    # (member or guest email), IP and device. Counted in a beat task: nothing to refuse there;
    # hold and block bar the subject's checkout (until review, or RISK_BLOCK_MINUTES).
    "payment_failed_buyer": env_rule("RISK_RULE_PAYMENT_FAILED_BUYER", "5/3600 log"),
    "payment_failed_ip": env_rule("RISK_RULE_PAYMENT_FAILED_IP", "20/3600 log"),
    "payment_failed_device": env_rule("RISK_RULE_PAYMENT_FAILED_DEVICE", "5/3600 log"),
    # Refund requests per buyer, IP and device (of the order). A refund request is never refused
    # by a rule (消费者权益保护法 第二十五条: the 7-day return is the buyer's right): past a threshold
    # with any action but log it goes to staff review; hold and block also bar the subject's checkout
    # ("对频繁发起无理由退款……的用户限制购买权限", the product brief).
    "refund_velocity_buyer": env_rule("RISK_RULE_REFUND_VELOCITY_BUYER", "5/86400 hold"),
    "refund_velocity_ip": env_rule("RISK_RULE_REFUND_VELOCITY_IP", "15/86400 log"),
    "refund_velocity_device": env_rule("RISK_RULE_REFUND_VELOCITY_DEVICE", "5/86400 log"),
    # Clusters, found by the beat task risk-clusters-scan: more than <limit> distinct accounts
    # (members or guest emails) on one device, one IP or one payout account within <window>
    # seconds. One alert per cluster while it is open; hold and block bar the device or IP
    # (never by default: one IP may be a whole carrier's NAT).
    "shared_device": env_rule("RISK_RULE_SHARED_DEVICE", "3/86400 log"),
    "shared_ip": env_rule("RISK_RULE_SHARED_IP", "20/86400 log"),
    "shared_payout": env_rule("RISK_RULE_SHARED_PAYOUT", "2/2592000 log"),
}
# Alerts of these rules (comma-separated names) record a credit event of kind "anomaly" when
# raised (cancelled if staff dismiss the alert); the others only when staff block their subject.
RISK_CREDIT_ON_ALERT = frozenset(r for r in env("RISK_CREDIT_ON_ALERT", "").replace(" ", "").split(",") if r)
if unknown := RISK_CREDIT_ON_ALERT - set(RISK_RULES) - {"stock_hogging"}:
    raise ImproperlyConfigured(f"RISK_CREDIT_ON_ALERT names unknown rules: {sorted(unknown)}")
RISK_BLOCK_MINUTES = env_positive("RISK_BLOCK_MINUTES", 24 * 60)
# Stock hogging: unpaid orders (and the codes they reserve) one client may hold at once, per
# product and over all products. A client is a member or guest email, and a device; an IP
# (shared by many behind carrier NAT) may hold RISK_HOLD_IP_FACTOR times as much.
RISK_HOLD_PRODUCT_ORDERS = env_positive("RISK_HOLD_PRODUCT_ORDERS", 3)
RISK_HOLD_PRODUCT_CODES = env_positive("RISK_HOLD_PRODUCT_CODES", 20)
RISK_HOLD_ORDERS = env_positive("RISK_HOLD_ORDERS", 5)
RISK_HOLD_CODES = env_positive("RISK_HOLD_CODES", 50)
RISK_HOLD_IP_FACTOR = env_positive("RISK_HOLD_IP_FACTOR", 3)
# Sign-ups with an address at a disposable-mail domain (risk/data/disposable_email_domains.txt).
RISK_REFUSE_DISPOSABLE_EMAIL = env_bool("RISK_REFUSE_DISPOSABLE_EMAIL", True)
# The captcha a rule with the action "captcha" asks for: an ALTCHA proof-of-work, self-hosted (no
# third-party service, so it works inside China; risk/captcha.py). Challenges are signed with
# RISK_CAPTCHA_HMAC_KEY (derived from SECRET_KEY when unset), expire after
# RISK_CAPTCHA_EXPIRES_SECONDS and are accepted once. RISK_CAPTCHA_COST: PBKDF2 iterations per try
# (a phone solves the default in about a second; higher is slower for bots and people alike).
RISK_CAPTCHA_HMAC_KEY = env("RISK_CAPTCHA_HMAC_KEY", "")
RISK_CAPTCHA_EXPIRES_SECONDS = env_positive("RISK_CAPTCHA_EXPIRES_SECONDS", 600)
RISK_CAPTCHA_COST = env_positive("RISK_CAPTCHA_COST", 5000)
# The device cookie (a random id, signed): a security measure, kept two years.
RISK_DEVICE_COOKIE = env("RISK_DEVICE_COOKIE", "mk_device")

# --- Staff accounts (issue 13) ----------------------------------------------------------
# Two-factor authentication (allauth.mfa): an authenticator app (TOTP), security keys
# (WebAuthn) and one-time recovery codes. Anyone may turn it on at /accounts/2fa/; staff must
# (STAFF_MFA_REQUIRED): a staff session that has not passed a second factor reaches nothing but
# the pages that set one up or ask for it (compliance.middleware), admin included.
MFA_ADAPTER = "accounts.adapter.MFAAdapter"  # secrets encrypted with CARD_CODE_KEYS, QR by segno
MFA_FORMS = {"add_webauthn": "accounts.forms.KeyAddForm", "edit_webauthn": "accounts.forms.KeyEditForm"}
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_TOTP_ISSUER = env("MFA_TOTP_ISSUER", "卡盟")
MFA_TOTP_TOLERANCE = 1  # one 30-second step either side: a phone's clock is rarely exact
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not PRODUCTION  # http://localhost in development
MFA_RECOVERY_CODE_COUNT = 10
STAFF_MFA_REQUIRED = env_bool("STAFF_MFA_REQUIRED", default=PRODUCTION)
if PRODUCTION and not STAFF_MFA_REQUIRED:
    raise ImproperlyConfigured("STAFF_MFA_REQUIRED cannot be off with DJANGO_PRODUCTION=1")
# A staff session ends after this many minutes without a request, and in any case this many
# hours after signing in (a shift); buyers keep Django's two weeks.
STAFF_SESSION_MINUTES = env_positive("STAFF_SESSION_MINUTES", 30)
STAFF_SESSION_MAX_HOURS = env_positive("STAFF_SESSION_MAX_HOURS", 10)

# --- Email ----------------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
# Seconds an SMTP connect or reply may take (Django's default: wait forever). Email tasks are CALL
# or BATCH tasks (marketplace/tasklimits.py): a mail server that stops answering fails the send in
# time for the task to record it, instead of holding the task until its time limit.
EMAIL_TIMEOUT = env_positive("EMAIL_TIMEOUT", 20)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "卡盟 <no-reply@localhost>")
# Delivery emails go out in batches: beat runs orders.tasks.send_delivery_emails every few
# seconds (marketplace.celery.DELIVERY_EMAIL_INTERVAL), which sends what is due, at most
# DELIVERY_EMAIL_BATCH_SIZE per mail connection and transaction; a delivery queues nothing for its
# email. (Queueing a run per burst from the delivery, held back a second to gather the burst, was
# tried: the held ETA message stays unacknowledged in the worker, and kombu's Redis transport
# fails to restore it when the broker connection drops: the worker exits with "Unrecoverable
# error: AttributeError ... 'hostname'", as tests/test_faults.py's Redis kill showed.)
# The sweep (beat, every minute) sends those due for DELIVERY_EMAIL_SWEEP_GRACE_SECONDS (the
# runs leave them to it); neither sends for orders delivered more than
# DELIVERY_EMAIL_MAX_AGE_HOURS ago (a late email about an old order, or one that failed for good,
# is not sent out of the blue).
DELIVERY_EMAIL_BATCH_SIZE = env_positive("DELIVERY_EMAIL_BATCH_SIZE", 50)
DELIVERY_EMAIL_SWEEP_GRACE_SECONDS = env_positive("DELIVERY_EMAIL_SWEEP_GRACE_SECONDS", 60)
DELIVERY_EMAIL_MAX_AGE_HOURS = env_positive("DELIVERY_EMAIL_MAX_AGE_HOURS", 24)

# --- i18n -----------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates drawn without a format of their own (admin, refund messages) as the pages draw them.
FORMAT_MODULE_PATH = ["marketplace.formats"]
TIME_ZONE = "Asia/Shanghai"  # Alipay expects Beijing time in its requests
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = not PRODUCTION  # serve straight from static/ in development
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Private uploads (never under the web root): served only by views that check who asks
# (aftersales.views.tickets.attachment). WhiteNoise serves STATIC_ROOT and STATICFILES_DIRS to anyone,
# so the private folder may neither lie inside one of them nor contain one.
PRIVATE_MEDIA_ROOT = Path(env("PRIVATE_MEDIA_ROOT", str(VAR_DIR / "private")))
for _public in (STATIC_ROOT, *STATICFILES_DIRS):
    _a, _b = PRIVATE_MEDIA_ROOT.resolve(), Path(_public).resolve()
    if _a.is_relative_to(_b) or _b.is_relative_to(_a):
        raise ImproperlyConfigured(f"PRIVATE_MEDIA_ROOT ({_a}) overlaps a folder served as static files ({_b})")

# --- Business rules -------------------------------------------------------------------
ORDER_PAYMENT_MINUTES = int(env("ORDER_PAYMENT_MINUTES", "15"))
# An order fulfilled from a supplier's system and not delivered this long after payment is
# refunded (orders.services.upstream); a late delivery then goes into stock.
UPSTREAM_GIVE_UP_MINUTES = int(env("UPSTREAM_GIVE_UP_MINUTES", "30"))
# A manual top-up (代充 by staff, orders.services.topup) is due this long after payment: the SLA
# sweep warns the after-sales supervisors with a third of it left and again once it is overdue.
MANUAL_TOPUP_SLA_MINUTES = int(env("MANUAL_TOPUP_SLA_MINUTES", "30"))
# Imports with more lines than this run in a Celery task; smaller ones too, but the form waits.
STOCK_IMPORT_MAX_LINES = int(env("STOCK_IMPORT_MAX_LINES", "200000"))

# --- Agents ---------------------------------------------------------------------------
# How deep the reseller tree may go (an agent directly under the platform is at depth 1).
AGENTS_MAX_DEPTH = int(env("AGENTS_MAX_DEPTH", "5"))
# The no-reason refund window: commissions stay pending until it closes.
REFUND_WINDOW_DAYS = int(env("REFUND_WINDOW_DAYS", "7"))
# --- Referrals (referrals; one level only) --------------------------------------------------
# The inviter's balance credit when an invitee's first order is delivered and its refund window
# (REFUND_WINDOW_DAYS) has closed; rewards an inviter may earn per day (Beijing time) before the
# next is refused and alerted; how long the signed invitation cookie from /r/<code>/ lasts.
REFERRAL_REWARD_AMOUNT = Decimal(env("REFERRAL_REWARD_AMOUNT", "5.00"))
if REFERRAL_REWARD_AMOUNT <= 0 or REFERRAL_REWARD_AMOUNT.quantize(Decimal("0.01")) != REFERRAL_REWARD_AMOUNT:
    raise ImproperlyConfigured("REFERRAL_REWARD_AMOUNT is an amount above zero with at most two decimals")
REFERRAL_DAILY_CAP = env_positive("REFERRAL_DAILY_CAP", 10)
REFERRAL_COOKIE_DAYS = env_positive("REFERRAL_COOKIE_DAYS", 30)
# Guest orders: how long the emailed, signed link to the order works; how long an emailed
# one-time code lives and how many wrong tries it takes; how long a proof (query password
# or code) lets one browser reveal the order's codes.
GUEST_LINK_MAX_AGE_DAYS = int(env("GUEST_LINK_MAX_AGE_DAYS", "30"))
GUEST_CODE_MINUTES = int(env("GUEST_CODE_MINUTES", "10"))
GUEST_CODE_MAX_ATTEMPTS = int(env("GUEST_CODE_MAX_ATTEMPTS", "5"))
GUEST_CODES_PER_HOUR = int(env("GUEST_CODES_PER_HOUR", "5"))
GUEST_PASSWORD_MAX_FAILURES = int(env("GUEST_PASSWORD_MAX_FAILURES", "10"))  # per order, an hour
GUEST_PROOF_MINUTES = int(env("GUEST_PROOF_MINUTES", "60"))
# Guest order lookup (orders.services.guest_lookup): attempts (any outcome) per client (IP, IPv6
# by /64), per email and per order number within a window of minutes, then 429 with Retry-After.
# The one-time emailed link's lifetime; links emailed per address an hour (past it none is sent,
# silently: the answer never tells); how many of an email's newest guest orders a query password
# is checked against. The browser's "my recent orders" cookie: lifetime, orders listed.
GUEST_LOOKUP_IP_LIMIT = env_positive("GUEST_LOOKUP_IP_LIMIT", 30)
GUEST_LOOKUP_IP_WINDOW_MINUTES = env_positive("GUEST_LOOKUP_IP_WINDOW_MINUTES", 15)
GUEST_LOOKUP_EMAIL_LIMIT = env_positive("GUEST_LOOKUP_EMAIL_LIMIT", 10)
GUEST_LOOKUP_EMAIL_WINDOW_MINUTES = env_positive("GUEST_LOOKUP_EMAIL_WINDOW_MINUTES", 60)
GUEST_LOOKUP_NUMBER_LIMIT = env_positive("GUEST_LOOKUP_NUMBER_LIMIT", 10)
GUEST_LOOKUP_NUMBER_WINDOW_MINUTES = env_positive("GUEST_LOOKUP_NUMBER_WINDOW_MINUTES", 60)
GUEST_LOOKUP_LINK_MINUTES = env_positive("GUEST_LOOKUP_LINK_MINUTES", 30)
GUEST_LOOKUP_LINKS_PER_HOUR = env_positive("GUEST_LOOKUP_LINKS_PER_HOUR", 3)
GUEST_LOOKUP_EMAIL_MAX_ORDERS = env_positive("GUEST_LOOKUP_EMAIL_MAX_ORDERS", 20)
GUEST_BROWSER_COOKIE_DAYS = env_positive("GUEST_BROWSER_COOKIE_DAYS", 180)
GUEST_BROWSER_MAX_ORDERS = env_positive("GUEST_BROWSER_MAX_ORDERS", 20)
# The trust centre's authorisation-certificate lookup (trust.views): lookups per client (IP, IPv6
# by /64) within a window of minutes, then 429 with Retry-After.
TRUST_CERTIFICATE_LOOKUP_LIMIT = env_positive("TRUST_CERTIFICATE_LOOKUP_LIMIT", 20)
TRUST_CERTIFICATE_LOOKUP_WINDOW_MINUTES = env_positive("TRUST_CERTIFICATE_LOOKUP_WINDOW_MINUTES", 10)
# After-sales: staff in this group get escalated tickets (SLA breaches); a buyer with more than
# this many no-reason refunds in the period goes to staff review instead of automatic approval.
AFTERSALES_SUPERVISOR_GROUP = env("AFTERSALES_SUPERVISOR_GROUP", "after-sales supervisors")
# Who is warned 30 and 7 days before a qualification's validity ends (and when it has ended),
# besides the staff who may change qualifications in admin: comma-separated addresses.
COMPLIANCE_EMAILS = env_list("COMPLIANCE_EMAILS")
NO_REASON_REFUND_LIMIT = int(env("NO_REASON_REFUND_LIMIT", "5"))
NO_REASON_REFUND_LIMIT_DAYS = int(env("NO_REASON_REFUND_LIMIT_DAYS", "30"))

# The credit rating (compliance.rating): each kind of credit event weighs ``weight`` points,
# halving every ``half_life_days`` (score = sum of weight * 0.5 ** (age / half-life)); the
# levels that the score maps to are edited by staff in admin (compliance.CreditLevel). A staff
# adjustment carries its own weight (positive or negative). Events older than
# CREDIT_HORIZON_DAYS are not read at all.
CREDIT_RULES = {
    "no_reason_refund": {"weight": 1.0, "half_life_days": 90},
    "dispute_lost": {"weight": 2.0, "half_life_days": 180},
    "dispute_won": {"weight": 0.0, "half_life_days": 90},
    "reissue": {"weight": 0.5, "half_life_days": 90},
    "arbitration_won": {"weight": 0.0, "half_life_days": 180},
    "arbitration_lost": {"weight": 3.0, "half_life_days": 180},
    "order_expired": {"weight": 0.5, "half_life_days": 30},
    "payment_failed": {"weight": 1.0, "half_life_days": 30},
    "anomaly": {"weight": 2.0, "half_life_days": 30},
    "staff_adjustment": {"weight": 0.0, "half_life_days": 365},
}
CREDIT_HORIZON_DAYS = int(env("CREDIT_HORIZON_DAYS", "1095"))
# A resolved ticket may be reopened by the buyer for this many days; attachments' size limit.
TICKET_REOPEN_DAYS = int(env("TICKET_REOPEN_DAYS", "7"))
TICKET_ATTACHMENT_MAX_BYTES = int(env("TICKET_ATTACHMENT_MAX_BYTES", str(5 * 1024 * 1024)))
# A buyer may take a decision against them to arbitration for this many days.
ARBITRATION_WINDOW_DAYS = int(env("ARBITRATION_WINDOW_DAYS", "30"))
# Withdrawals of commission: the smallest amount, and the fee (a percentage, at least a minimum).
WITHDRAWAL_MIN_AMOUNT = env("WITHDRAWAL_MIN_AMOUNT", "10.00")
WITHDRAWAL_FEE_PERCENT = env("WITHDRAWAL_FEE_PERCENT", "0.5")
WITHDRAWAL_FEE_MIN = env("WITHDRAWAL_FEE_MIN", "1.00")
# Integration API: signatures older or newer than this many seconds are refused (and their
# nonces need only be remembered this long); requests per key per minute.
AGENT_API_MAX_SKEW = int(env("AGENT_API_MAX_SKEW", "300"))
AGENT_API_RATE_PER_MINUTE = int(env("AGENT_API_RATE_PER_MINUTE", "120"))
# Callbacks to private, loopback or link-local addresses (SSRF): allowed in development only.
AGENT_API_CALLBACKS_ALLOW_PRIVATE = env_bool("AGENT_API_CALLBACKS_ALLOW_PRIVATE", default=not PRODUCTION)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "卡盟 agent API",
    "DESCRIPTION": "Integration API for agents: products at your price, orders paid from your balance, codes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The long description (signing, errors, idempotency, callbacks): api/schema_description.md.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.postprocess_description",
    ],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVERS": [{"url": "/", "description": "This site"}],
    "TAGS": [
        {"name": "products", "description": "The catalogue at your price, with live stock."},
        {"name": "orders", "description": "Orders paid from your balance, and their codes."},
        {"name": "account", "description": "Your balance and commissions."},
    ],
}

# --- Payments -------------------------------------------------------------------------
# The sandbox gateway: a cashier for development and demos that signs notifications with a
# locally generated key. It refuses to run in production.
PAYMENTS_SANDBOX_ENABLED = env_bool("PAYMENTS_SANDBOX_ENABLED", default=not PRODUCTION)
if PRODUCTION and PAYMENTS_SANDBOX_ENABLED:
    raise ImproperlyConfigured("The sandbox payment gateway cannot be enabled in production")
PAYMENTS_SANDBOX_APP_ID = "sandbox-app"

PAYMENTS_SANDBOX_KEY_DIR = VAR_DIR / "keys"


def env_secret(name: str) -> str:
    """A key given inline (NAME) or as a file (NAME_FILE, e.g. a mounted secret)."""
    path = env(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path} ({exc.strerror})") from exc
    return (env(name, "") or "").strip()


# Alipay (alipay-sdk-python). The channel shows only when all of these are set.
ALIPAY_APP_ID = env("ALIPAY_APP_ID", "")
ALIPAY_SELLER_ID = env("ALIPAY_SELLER_ID", "")  # the merchant's PID (2088...), checked on notifications
ALIPAY_APP_PRIVATE_KEY = env_secret("ALIPAY_APP_PRIVATE_KEY")  # PKCS#1 PEM or bare base64
ALIPAY_PUBLIC_KEY = env_secret("ALIPAY_PUBLIC_KEY")  # Alipay's public key: PEM or bare base64
ALIPAY_SERVER_URL = env("ALIPAY_SERVER_URL", "https://openapi.alipay.com/gateway.do")

# WeChat Pay APIv3 (wechatpayv3) in public-key mode. The channel shows only when all are set.
WECHATPAY_MCHID = env("WECHATPAY_MCHID", "")
WECHATPAY_APPID = env("WECHATPAY_APPID", "")
WECHATPAY_PRIVATE_KEY = env_secret("WECHATPAY_PRIVATE_KEY")  # merchant API key, PKCS#8 PEM
WECHATPAY_CERT_SERIAL_NO = env("WECHATPAY_CERT_SERIAL_NO", "")
WECHATPAY_APIV3_KEY = env_secret("WECHATPAY_APIV3_KEY")  # exactly 32 ASCII characters
WECHATPAY_PUBLIC_KEY = env_secret("WECHATPAY_PUBLIC_KEY")  # WeChat Pay's public key, PEM
WECHATPAY_PUBLIC_KEY_ID = env("WECHATPAY_PUBLIC_KEY_ID", "")  # PUB_KEY_ID_...
WECHATPAY_GATEWAY_URL = env("WECHATPAY_GATEWAY_URL", "")  # empty: the SDK's own (api.mch.weixin.qq.com)
# Refuse notifications whose Wechatpay-Timestamp is older (or newer) than this (replays).
WECHATPAY_MAX_CLOCK_SKEW = int(env("WECHATPAY_MAX_CLOCK_SKEW", "300"))
PAYMENTS_GATEWAY_TIMEOUT = int(env("PAYMENTS_GATEWAY_TIMEOUT", "15"))

# --- Real-name verification (compliance.realname) ----------------------------------------
# "http": the two-element (name + identity number) check over HTTPS, signed Alibaba Cloud API
# Gateway style with the app key and secret; "sandbox": deterministic answers for development,
# refused in production (a system check error, compliance.checks, and at run time).
REALNAME_PROVIDER = env("REALNAME_PROVIDER", "http" if PRODUCTION else "sandbox")
REALNAME_URL = env("REALNAME_URL", "")
REALNAME_APP_KEY = env("REALNAME_APP_KEY", "")
REALNAME_APP_SECRET = env_secret("REALNAME_APP_SECRET")
# Given inline or as a file (a mounted secret): docker-compose.yml cannot require "one of the two"
# (its ${NAME:?} is for one name), so it is required here, at the start of every process. The
# URL and key are checked by `manage.py check` and `migrate` (compliance.checks).
if PRODUCTION and not REALNAME_APP_SECRET:
    raise ImproperlyConfigured("Set REALNAME_APP_SECRET or REALNAME_APP_SECRET_FILE (a mounted secret) in production")
REALNAME_TIMEOUT = float(env("REALNAME_TIMEOUT", "8"))

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from this site's files, never inline (no
# <script> without src, no onclick=), so an injected tag cannot run. Styles allow inline
# style attributes (Bootstrap's and Swagger UI's, progress widths): CSS cannot run code.
# Forms may post to this site and to the payment gateways the cashier sends buyers to (a
# redirect after a form counts for form-action). Production enforces it; development sends the
# same policy as Report-Only (the browser logs what it would block) unless CSP_REPORT_ONLY=0.
from csp.constants import NONE, SELF, UNSAFE_INLINE  # noqa: E402

_csp_form_action_extra = env_list("CSP_FORM_ACTION_EXTRA", "https://*.alipay.com,https://*.tenpay.com")
_CSP = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],  # data: Bootstrap's icons in CSS; blob: logo preview
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF, *_csp_form_action_extra],
    }
}
_csp_report_only = env_bool("CSP_REPORT_ONLY", default=not PRODUCTION)
if PRODUCTION and _csp_report_only:
    raise ImproperlyConfigured("CSP_REPORT_ONLY cannot be on with DJANGO_PRODUCTION=1")
if _csp_report_only:
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
else:
    CONTENT_SECURITY_POLICY = _CSP
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# The load balancer's health probe and Prometheus' scrape may come over plain HTTP from inside
# (and by a container's address: marketplace.middleware.ProbeHostMiddleware).
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^healthz$", r"^metrics$"]
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# LOG_FORMAT=json (production, docker-compose.yml): one JSON object a line, with the request id,
# order number and payment of the sale the line is about (marketplace/logcontext.py); plain text
# otherwise. Celery's own handlers get the same (marketplace/celery.py).
LOG_FORMAT = env("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT is plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "marketplace.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {"()": "marketplace.logcontext.json_formatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
