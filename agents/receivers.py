"""``User.is_agent`` follows the agent profiles: set when one is created, cleared when it is
deleted (whatever creates or deletes it: the services, the admin, a fixture)."""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Agent


def _flag(agent: Agent, value: bool) -> None:
    get_user_model().objects.filter(pk=agent.user_id).update(is_agent=value)
    user = Agent.user.field.get_cached_value(agent, default=None)  # the caller's user object, if any
    if user is not None:
        user.is_agent = value


@receiver(post_save, sender=Agent, dispatch_uid="agents.user_is_agent_set")
def user_is_agent_set(sender, instance: Agent, created: bool, raw: bool = False, **kwargs) -> None:
    if created:
        _flag(instance, True)


@receiver(post_delete, sender=Agent, dispatch_uid="agents.user_is_agent_clear")
def user_is_agent_clear(sender, instance: Agent, **kwargs) -> None:
    _flag(instance, False)
