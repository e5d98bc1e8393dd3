"""Staff access to a buyer's private objects outside admin: the model permission, not the flag.

The staff flag only lets a person into admin; what they may see there is decided by model
permissions. A page or download outside admin that shows staff a buyer's object (a ticket's
images, a dossier) asks the same question the object's ``ModelAdmin`` asks, so the two can
never disagree: a staff account without the permission sees there what any stranger sees.
"""

from django.db.models import Model


def staff_has_perm(user, perm: str) -> bool:
    """An active staff member holding ``perm`` ("app_label.codename"; superusers hold all)."""
    return bool(
        user is not None
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm(perm)
    )


def staff_can_view(user, model: type[Model]) -> bool:
    """What ``ModelAdmin.has_view_permission`` grants on ``model``: its view or change permission."""
    opts = model._meta
    return staff_has_perm(user, f"{opts.app_label}.view_{opts.model_name}") or staff_has_perm(
        user, f"{opts.app_label}.change_{opts.model_name}"
    )
