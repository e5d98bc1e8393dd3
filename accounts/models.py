from functools import lru_cache

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """Buyers, agents and staff. Email is the login; the username is generated."""

    email = models.EmailField(_("email address"), unique=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    # Whether an agents.Agent profile exists for this user, kept by agents' signals (created,
    # deleted). Every logged-in page asks (the navigation, the viewer's prices): a column of
    # the row already loaded, instead of a query of the agents table per request.
    is_agent = models.BooleanField(_("agent"), default=False, editable=False)

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self):
        return self.email or self.username

    def _get_session_auth_hash(self, secret=None):
        # Django's (an HMAC of the password field), kept per process: every logged-in request
        # checks its session against it. A changed password or secret is another key.
        return session_auth_hash(self.password, settings.SECRET_KEY if secret is None else secret)


SESSION_AUTH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"


@lru_cache(maxsize=4096)
def session_auth_hash(password: str, secret: str) -> str:
    """``AbstractBaseUser._get_session_auth_hash``'s value for this password field and secret."""
    return salted_hmac(SESSION_AUTH_SALT, password, secret=secret, algorithm="sha256").hexdigest()


def user_display(user) -> str:
    return user.email or user.username
