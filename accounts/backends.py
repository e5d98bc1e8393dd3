"""The authentication backends: Django's and allauth's, with the user of a session read by one
statement of constant text.

Every logged-in request loads its user through the session's backend (``get_user``). Django's
``ModelBackend.get_user`` builds and compiles a queryset for it each time (``_default_manager
.get(pk=...)``); here the row is read by ``marketplace.rows.read_one``, whose SQL is built once
per process, and becomes the same instance. The answer is the parent's: None for a missing
user, None for one ``user_can_authenticate`` refuses (inactive). Sessions written under the
previous dotted paths are renamed by ``accounts.middleware``.
"""

from allauth.account import auth_backends
from django.contrib.auth import backends, get_user_model
from django.db import router

from marketplace import rows

# The dotted paths sessions stored before these classes, and the class each one now names.
RENAMED = {
    "django.contrib.auth.backends.ModelBackend": "accounts.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend": "accounts.backends.AuthenticationBackend",
}


class _UserReadOnce(backends.ModelBackend):
    def get_user(self, user_id):
        model = get_user_model()
        user = rows.read_one(model, model._meta.pk.name, user_id, using=router.db_for_read(model))
        return user if user is not None and self.user_can_authenticate(user) else None


class ModelBackend(_UserReadOnce):
    """django.contrib.auth's ModelBackend (passwords, permissions)."""


class AuthenticationBackend(_UserReadOnce, auth_backends.AuthenticationBackend):
    """allauth's backend (login by email); its ``get_user`` is the one above."""
