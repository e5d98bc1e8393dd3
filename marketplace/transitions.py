"""State machines as data, with one guarded transition function.

A model's status is a ``TextChoices`` field; its allowed moves are a ``StateMachine``
(a table from each state to the states it may move to). ``StateMachine.apply`` is the only
way a status changes: the caller has locked the row (``select_for_update``); the function
refuses an illegal move, is a no-op on a repeat, writes a history row and queues side effects
for after the commit.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .errors import Conflict


class IllegalTransition(Conflict):
    """A status move the machine does not allow (someone else acted first, or a wrong button)."""

    code = "illegal_transition"

    def __init__(self, instance: models.Model, src: str, dst: str):
        super().__init__(f"{type(instance).__name__} {instance.pk}: {src} -> {dst} is not allowed")
        self.src, self.dst = src, dst


@dataclass(frozen=True)
class StateMachine:
    transitions: Mapping[str, frozenset[str]]
    history_model: type[models.Model] | None = None
    history_fk: str = ""
    status_field: str = "status"
    # Timestamp fields stamped when a state is entered, e.g. {"paid": "paid_at"}.
    entered_at: Mapping[str, str] = field(default_factory=dict)

    def can(self, src: str, dst: str) -> bool:
        return dst in self.transitions.get(src, frozenset())

    def apply(
        self,
        instance: models.Model,
        dst: str,
        *,
        actor=None,
        note: str = "",
        update: Mapping[str, object] | None = None,
        on_commit: Iterable[Callable[[], object]] = (),  # what they return is ignored
    ) -> bool:
        """Move ``instance`` (locked by the caller) to ``dst``.

        Returns False when it is already there (a repeat changes nothing), raises
        ``IllegalTransition`` for a move the table does not allow.
        """
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("transitions run inside a transaction, on a locked row")
        src = getattr(instance, self.status_field)
        if src == dst:
            return False
        if not self.can(src, dst):
            raise IllegalTransition(instance, src, dst)
        fields = {self.status_field: dst, **(update or {})}
        if dst in self.entered_at:
            fields[self.entered_at[dst]] = timezone.now()
        for name, value in fields.items():
            setattr(instance, name, value)
        instance.save(update_fields=list(fields))
        if self.history_model is not None:
            self.history_model._default_manager.create(
                **{self.history_fk: instance}, from_status=src, to_status=dst, actor=actor, note=note[:500]
            )
        for callback in on_commit:
            transaction.on_commit(callback)
        return True


def table(spec: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {src: frozenset(dsts) for src, dsts in spec.items()}


class StatusChange(models.Model):
    """The history row ``StateMachine.apply`` writes. A subclass adds the foreign key to its
    subject (named by ``subject``, the machine's ``history_fk``) and ``from_status`` /
    ``to_status`` with its own choices."""

    subject = ""
    from_status: str  # each subclass declares these two fields, with its own choices
    to_status: str

    at = models.DateTimeField(_("time"), auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        abstract = True
        ordering = ("at", "id")
        verbose_name = _("status change")
        verbose_name_plural = _("status history")

    def __str__(self):
        return f"{getattr(self, self.subject + '_id')}: {self.from_status or '∅'} → {self.to_status}"
