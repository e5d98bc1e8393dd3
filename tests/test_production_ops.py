"""Production settings for running behind PgBouncer, with JSON logs and protected metrics (issue 17)."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_deploy_check import BASE_DIR, production_env

PRINT = (
    "from django.conf import settings as s; import json; d = s.DATABASES['default']; print(json.dumps({"
    "'cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False), 'age': d['CONN_MAX_AGE'], 'log': s.LOG_FORMAT,"
    "'metrics_ips': s.METRICS_ALLOWED_IPS, 'exempt': s.SECURE_REDIRECT_EXEMPT, 'queues': list(s.QUEUE_NAMES)}))"
)


def django_setup(env, code: str = "") -> subprocess.CompletedProcess:
    """A Python process that loads the settings from ``env``, then runs ``code``."""
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(env, code: str = PRINT) -> dict:
    result = django_setup(env, code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def refused_start(env) -> str:
    """What the settings say when they refuse to load (a non-zero exit is asserted)."""
    result = django_setup(env)
    assert result.returncode != 0, "the settings loaded"
    return result.stderr


def test_transaction_pooling_and_connection_age(tmp_path):
    env = production_env(
        tmp_path,
        DATABASE_URL="postgres://app:pw@pgbouncer:5432/kamarket",
        DB_TRANSACTION_POOLING="1",
        DB_CONN_MAX_AGE="0",
        LOG_FORMAT="json",
    )
    got = settings_of(env)
    assert got["cursors"] is True and got["age"] == 0 and got["log"] == "json"
    # Production allows no address by default: the token, or METRICS_ALLOWED_IPS set on purpose.
    assert got["metrics_ips"] == []
    assert got["exempt"] == ["^health/", "^healthz$", "^metrics$"]

    plain = settings_of(production_env(tmp_path, DATABASE_URL="postgres://app:pw@db:5432/kamarket"))
    assert plain["cursors"] is False and plain["age"] == 60 and plain["log"] == "plain"


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOG_FORMAT", "xml"), ("METRICS_ALLOWED_IPS", "10.0.0.0/8,not-an-ip"), ("DB_LOCK_TIMEOUT", "five seconds")],
)
def test_bad_values_refuse_to_start(tmp_path, name, value):
    assert name in refused_start(production_env(tmp_path, **{name: value}))


def test_the_migration_gets_its_lock_timeout_and_pgbouncer_refuses_it(tmp_path):
    """docker-compose.yml's migrate service connects straight to PostgreSQL with DB_LOCK_TIMEOUT: a
    startup option of its connections. Through PgBouncer (the app's containers) startup options
    are refused, so the two together stop the start with a reason instead of every connection."""
    code = (
        "from django.conf import settings as s; import json; print(json.dumps(s.DATABASES['default'].get('OPTIONS')))"
    )
    direct = production_env(tmp_path, DATABASE_URL="postgres://kamarket:pw@postgres:5432/kamarket")
    assert settings_of({**direct, "DB_LOCK_TIMEOUT": "5s"}, code) == {"options": "-c lock_timeout=5s"}
    both = {**direct, "DB_LOCK_TIMEOUT": "5s", "DB_STATEMENT_TIMEOUT": "10min"}
    assert settings_of(both, code) == {"options": "-c lock_timeout=5s -c statement_timeout=10min"}
    assert settings_of(direct, code) == {}
    pooled = {**direct, "DB_LOCK_TIMEOUT": "5s", "DB_TRANSACTION_POOLING": "1"}
    assert "PgBouncer (DB_TRANSACTION_POOLING) refuses" in refused_start(pooled)


# Settings read from the environment that docker-compose.yml does not pass to the containers, and why.
NOT_FOR_CONTAINERS = {
    "DJANGO_DEBUG": "never in production (the settings refuse DEBUG with DJANGO_PRODUCTION)",
    "PAYMENTS_SANDBOX_ENABLED": "the sandbox gateway is refused in production",
    "REALNAME_PROVIDER": "production always verifies through the http provider (REALNAME_URL)",
    "VAR_DIR": "the image's layout: /app/var, the appdata volume",
    "STATIC_ROOT": "the image's layout: collected when the image is built",
    "PRIVATE_MEDIA_ROOT": "the image's layout: under /app/var, the appdata volume",
    "DB_LOCK_TIMEOUT": "the migrate service's own (its environment): PgBouncer refuses it on the app's connections",
    "DB_STATEMENT_TIMEOUT": "the migrate service's own (its environment), as DB_LOCK_TIMEOUT",
}


def environment_names_read_by_settings() -> set[str]:
    """Every NAME settings.py reads with env("NAME", ...), env_count("NAME"), required("NAME"),
    os.environ.get("NAME") or os.environ["NAME"]."""
    import ast

    tree = ast.parse((BASE_DIR / "marketplace" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if (called.startswith("env") or called in {"required", "get"}) and str(node.args[0].value).isupper():
                names.add(node.args[0].value)
                if called == "env_secret":  # NAME or NAME_FILE
                    names.add(f"{node.args[0].value}_FILE")
        environ = isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value)
        if environ and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def compose_app_environment() -> dict[str, str]:
    import yaml

    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["x-env"]


def test_every_setting_from_the_environment_reaches_the_containers():
    """Before, ~120 settings (the admission gates the peak checklist says to set, rate limits,
    login locks, risk rules, the captcha key...) were read from the environment but not passed by
    docker-compose.yml: set in .env, they silently did nothing in production."""
    names = environment_names_read_by_settings()
    assert {
        "ADMISSION_CHECKOUTS_PER_SECOND",
        "DJANGO_SECRET_KEY",
        "RATE_CHECKOUT_NETWORK",
        "ALIPAY_PUBLIC_KEY_FILE",
    } <= names
    passed = set(compose_app_environment())
    missing = names - passed - set(NOT_FOR_CONTAINERS)
    assert not missing, f"read by settings.py, not passed by docker-compose.yml: {sorted(missing)}"
    assert not set(NOT_FOR_CONTAINERS) & passed
    # The tables' owner's password never reaches the app's containers.
    assert "POSTGRES_PASSWORD" not in passed


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """docker compose's ${NAME}, ${NAME:-default} and ${NAME:?error} against a .env."""
    import re

    def one(match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if dotenv.get(name):
            return dotenv[name]
        assert op != ":?", f"{name} is required: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_service_environment(service: str) -> dict[str, str]:
    """A service's environment as compose builds it (x-env merged with the service's own)."""
    import yaml

    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"][service]["environment"]


def dotenv_filled(tmp_path, **changes: str | None) -> dict[str, str]:
    """A .env with what compose requires, then ``changes`` (None: the line left out)."""
    required = production_env(tmp_path)
    dotenv = {
        **{k: required[k] for k in ("DJANGO_SECRET_KEY", "CARD_CODE_KEYS", "STOCK_HASH_KEY", "DJANGO_ALLOWED_HOSTS")},
        **{k: required[k] for k in ("REALNAME_URL", "REALNAME_APP_KEY", "REALNAME_APP_SECRET")},
        "POSTGRES_APP_PASSWORD": "app-pw",
        "POSTGRES_PASSWORD": "owner-pw",
        "SITE_URL": "https://shop.example.com",
        **changes,
    }
    return {name: value for name, value in dotenv.items() if value is not None}


def app_container(tmp_path, dotenv: dict[str, str]) -> dict[str, str]:
    """An app container's environment from that .env, as on the host (no PgBouncer, Redis here)."""
    container = {name: interpolate(str(value), dotenv) for name, value in compose_app_environment().items()}
    required = production_env(tmp_path)
    container.update(DATABASE_URL=required["DATABASE_URL"], VAR_DIR=required["VAR_DIR"])
    container.pop("REDIS_CACHE_URL")
    container.pop("CELERY_BROKER_URL")
    return {**required, **container}


def test_a_tunable_set_in_dotenv_reaches_the_settings_through_compose(tmp_path):
    """.env as an operator fills it before a peak → compose's mapping → the app's settings."""
    dotenv = dotenv_filled(
        tmp_path,
        ADMISSION_CHECKOUTS_PER_SECOND="37",
        RATE_CHECKOUT_NETWORK="11/60",
        DJANGO_SECRET_KEY_FALLBACKS="an-old-secret",
    )
    got = settings_of(
        app_container(tmp_path, dotenv),
        "from django.conf import settings as s; import json; print(json.dumps("
        "[s.ADMISSION_CHECKOUTS_PER_SECOND, s.SECRET_KEY_FALLBACKS, s.ADMISSION_QUEUE_WAIT_MS]))",
    )
    # Set in .env: 37 and the fallback; left out of .env: the setting's own default (200 ms).
    assert got == [37, ["an-old-secret"], 200]


def test_the_realname_secret_as_a_mounted_file_is_enough(tmp_path):
    """Before, compose required REALNAME_APP_SECRET (${NAME:?}) even when the secret came as a file
    (REALNAME_APP_SECRET_FILE, as the payment keys may): `docker compose up` stopped on the missing
    variable. Now either suffices: compose passes both, the settings take the file."""
    secret = tmp_path / "realname_app_secret"
    secret.write_text("from-the-mounted-file\n")
    dotenv = dotenv_filled(tmp_path, REALNAME_APP_SECRET=None, REALNAME_APP_SECRET_FILE=str(secret))
    container = app_container(tmp_path, dotenv)
    assert container["REALNAME_APP_SECRET"] == ""
    got = settings_of(
        container, "from django.conf import settings as s; import json; print(json.dumps(s.REALNAME_APP_SECRET))"
    )
    assert got == "from-the-mounted-file"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"REALNAME_APP_SECRET": None}, "Set REALNAME_APP_SECRET or REALNAME_APP_SECRET_FILE (a mounted secret)"),
        ({"REALNAME_APP_SECRET": None, "REALNAME_APP_SECRET_FILE": "/run/secrets/missing"}, "cannot read"),
    ],
)
def test_without_the_realname_secret_every_process_refuses_to_start(tmp_path, changes, message):
    """Compose lets the .env through (it cannot say "one of the two"); the settings stop the start
    of web, workers, beat and the migration with a reason."""
    container = app_container(tmp_path, dotenv_filled(tmp_path, **changes))
    stderr = refused_start(container)
    assert "ImproperlyConfigured" in stderr and message in stderr


def test_the_image_build_step_loads_the_production_settings(tmp_path):
    """The Dockerfile compiles translations and collects static files under production settings
    with throwaway values: a secret the settings start requiring must be given there too, or the
    image no longer builds (REALNAME_APP_SECRET, when the settings began to require it)."""
    import re
    import shlex

    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    step = re.search(r"^RUN (DJANGO_PRODUCTION=1 .*?) sh -c '([^']*)'", dockerfile, re.M | re.S)
    assert step, "the Dockerfile's build step under production settings"
    build_env = dict(word.split("=", 1) for word in shlex.split(step.group(1).replace("\\\n", " ")))
    build_env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'build.db'}"
    # manage.py's default settings module; a folder of the test's for what var/ would hold.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VAR_DIR": str(tmp_path / "var"), **build_env}
    env["DJANGO_SETTINGS_MODULE"] = "marketplace.settings"
    assert "collectstatic" in step.group(2)
    result = django_setup(env, "from django.conf import settings; print(settings.PRODUCTION)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "True"


def test_the_migrate_service_connects_directly_with_a_lock_timeout(tmp_path):
    """The migration waits at most MIGRATE_LOCK_TIMEOUT (5s) for a lock; the app's containers,
    through PgBouncer, have no startup options (PgBouncer would refuse the connection)."""
    code = (
        "from django.conf import settings as s; import json; d = s.DATABASES['default']; "
        "print(json.dumps([d['OPTIONS'], d.get('DISABLE_SERVER_SIDE_CURSORS', False), d['HOST']]))"
    )
    required = production_env(tmp_path)

    def migrate_settings(dotenv):
        environment = {
            name: interpolate(str(value), dotenv) for name, value in compose_service_environment("migrate").items()
        }
        environment.pop("REDIS_CACHE_URL")
        environment.pop("CELERY_BROKER_URL")
        return settings_of({**required, **environment, "VAR_DIR": required["VAR_DIR"]}, code)

    assert migrate_settings(dotenv_filled(tmp_path)) == [{"options": "-c lock_timeout=5s"}, False, "postgres"]
    tuned = dotenv_filled(tmp_path, MIGRATE_LOCK_TIMEOUT="2s", MIGRATE_STATEMENT_TIMEOUT="30min")
    assert migrate_settings(tuned) == [{"options": "-c lock_timeout=2s -c statement_timeout=30min"}, False, "postgres"]
    web = settings_of(app_container(tmp_path, dotenv_filled(tmp_path)), code)
    assert web[0] == {} and web[1] is True
