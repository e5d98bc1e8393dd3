"""The project's settings with this fixture app installed, for a ``manage.py migrate`` run in a
subprocess by tests/test_migration_lock_timeout.py."""

from marketplace.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.migration_fixtures"]  # noqa: F405
