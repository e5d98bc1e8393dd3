"""Production settings: `manage.py check --deploy` is clean, and missing secrets stop the start."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent

# Variables of the calling shell that would change what the production settings see.
_SCRUB = (
    "DJANGO_",
    "DATABASE_URL",
    "CARD_CODE_KEYS",
    "STOCK_HASH_KEY",
    "PAYMENTS_",
    "SECURE_",
    "VAR_DIR",
    "CELERY_",
    "REALNAME_",
)


def production_env(tmp_path, **overrides) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DJANGO_PRODUCTION": "1",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
            "CARD_CODE_KEYS": Fernet.generate_key().decode(),
            "STOCK_HASH_KEY": secrets.token_hex(32),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.db'}",
            "DJANGO_ALLOWED_HOSTS": "shop.example.com",
            "VAR_DIR": str(tmp_path / "var"),
            "REALNAME_URL": "https://realname.example.com/idcard/verify",
            "REALNAME_APP_KEY": "203000000",
            "REALNAME_APP_SECRET": secrets.token_hex(16),
        }
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_check_deploy_is_clean(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output


def test_check_deploy_can_fail(tmp_path):
    """The control: a weak secret key is reported, so the clean run above means something."""
    env = production_env(tmp_path, DJANGO_SECRET_KEY="short")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "CARD_CODE_KEYS", "STOCK_HASH_KEY", "DATABASE_URL"])
def test_production_without_a_secret_refuses_to_start(tmp_path, missing):
    result = manage(production_env(tmp_path, **{missing: None}), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"Set {missing}" in result.stderr
    assert not (tmp_path / "var" / "keys").exists()  # no development key was made up instead


def test_production_refuses_debug(tmp_path):
    result = manage(production_env(tmp_path, DJANGO_DEBUG="1"), "check")
    assert result.returncode != 0
    assert "DJANGO_DEBUG cannot be on with DJANGO_PRODUCTION=1" in result.stderr


def test_production_refuses_the_sandbox_realname_provider(tmp_path):
    """The sandbox answers "match" to made-up people: a system check error in production."""
    result = manage(production_env(tmp_path, REALNAME_PROVIDER="sandbox"), "check", "--deploy")
    assert result.returncode != 0
    assert "compliance.E001" in result.stdout + result.stderr


def test_production_needs_the_realname_provider_configured(tmp_path):
    result = manage(production_env(tmp_path, REALNAME_APP_KEY=None), "check", "--deploy")
    assert result.returncode != 0
    assert "compliance.E002" in result.stdout + result.stderr
    assert "REALNAME_APP_KEY" in result.stdout + result.stderr
    # The secret (inline or as a file) is required when the settings load, before any check.
    result = manage(production_env(tmp_path, REALNAME_APP_SECRET=None), "check", "--deploy")
    assert result.returncode != 0
    assert "Set REALNAME_APP_SECRET or REALNAME_APP_SECRET_FILE" in result.stderr
