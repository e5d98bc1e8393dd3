from django.contrib.auth.models import AbstractUser
from django.db import models
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


def user_display(user) -> str:
    return user.email or user.username
