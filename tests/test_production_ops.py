"""Production settings for running behind PgBouncer, with JSON logs and protected metrics (issue 17)."""

import json
import subprocess
import sys

import pytest

from tests.test_deploy_check import BASE_DIR, production_env

PRINT = (
    "from django.conf import settings as s; import json; d = s.DATABASES['default']; print(json.dumps({"
    "'cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False), 'age': d['CONN_MAX_AGE'], 'log': s.LOG_FORMAT,"
    "'metrics_ips': s.METRICS_ALLOWED_IPS, 'exempt': s.SECURE_REDIRECT_EXEMPT, 'queues': list(s.QUEUE_NAMES)}))"
)


def settings_of(env) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PRINT}"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


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


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("METRICS_ALLOWED_IPS", "10.0.0.0/8,not-an-ip")])
def test_bad_values_refuse_to_start(tmp_path, name, value):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=production_env(tmp_path, **{name: value}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and name in result.stderr
