""".env.example and the README's configuration table against what the code reads.

A name misspelt in .env.example (or left there after a rename) silently does nothing: the operator
sets it, compose passes nothing the settings read, the default stays. A setting the code reads but
neither file mentions cannot be found by an operator. Both files promise to be the reference
(.env.example: "reference for every variable that marketplace/settings.py reads"); before, about
twenty settings (risk rules for failed payments, refund velocity and shared devices, the restock
alerts' limits, the arbitration window...) were in neither.
"""

import re

from tests.test_deploy_check import BASE_DIR
from tests.test_production_ops import environment_names_read_by_settings

# Read by the development tools, not by settings.py (.env.example's "Development only" block).
DEVELOPMENT_ONLY = {"PORT": "dev.py", "TEST_REDIS_URL": "dev.py"}


def dotenv_names() -> list[str]:
    """Every NAME= line of .env.example, set or commented out."""
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (BASE_DIR / ".env.example").read_text(), re.M)


def readme_table_names() -> set[str]:
    readme = (BASE_DIR / "README.md").read_text()
    section = readme[readme.index("## Configuration") : readme.index("## Architecture")]
    names = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def compose_names() -> set[str]:
    return set(re.findall(r"\$\{(\w+)", (BASE_DIR / "docker-compose.yml").read_text()))


def test_every_name_in_dotenv_example_is_read():
    names = dotenv_names()
    assert {"DJANGO_SECRET_KEY", "POSTGRES_APP_PASSWORD", "ADMISSION_QUEUE_WAIT_MS", "DATABASE_URL"} <= set(names)
    read = environment_names_read_by_settings() | compose_names()
    unread = sorted(set(names) - read - set(DEVELOPMENT_ONLY))
    assert not unread, f".env.example names what neither settings.py nor docker-compose.yml reads: {unread}"
    assert len(names) == len(set(names)), "a name is listed twice in .env.example"
    for name, tool in DEVELOPMENT_ONLY.items():
        assert name in (BASE_DIR / tool).read_text()


def test_every_name_in_the_readme_table_is_read():
    stale = sorted(readme_table_names() - environment_names_read_by_settings())
    assert not stale, f"README's configuration table names what settings.py does not read: {stale}"


def test_every_setting_read_from_the_environment_is_documented():
    documented = readme_table_names() | set(dotenv_names())
    missing = sorted(
        name
        for name in environment_names_read_by_settings()
        if name not in documented and name.removesuffix("_FILE") not in documented
    )
    assert not missing, f"read by settings.py, in neither .env.example nor README's table: {missing}"


def test_an_empty_value_means_the_default_for_var_dir_too(tmp_path):
    """.env.example: "An empty value means use the default". VAR_DIR was read without the env()
    helper, so VAR_DIR= (as a template filled in leaves it) put keys, uploads and the broker's
    folder in the current directory."""
    from tests.test_deploy_check import production_env
    from tests.test_production_ops import settings_of

    env = production_env(tmp_path, VAR_DIR="", CELERY_BROKER_URL="memory://")
    got = settings_of(env, "from django.conf import settings as s; import json; print(json.dumps(str(s.VAR_DIR)))")
    assert got == str(BASE_DIR / "var")
