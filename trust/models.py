"""The public trust centre's figures, as the beat task last computed them (``trust.services``).

One row per figure and period: a recompute replaces the rows in one transaction, so the page
always shows one consistent set, each with the time it was computed. Nothing here is typed in:
the rows are written only by ``trust.services.trust_figures_compute``.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class TrustFigure(models.Model):
    # A figure's unit follows from its key (``trust.figures.FIGURES``): a share is a fraction
    # (0.875), a duration is in seconds, a count is whole, money is yuan.
    key = models.CharField(_("figure"), max_length=60)
    # 30 or 90: the figure is over the last so many days; 0: a balance on the date computed.
    period_days = models.PositiveSmallIntegerField(_("period (days)"))
    # Empty: nothing to compute it from in this period (shown as such, never as 0).
    value = models.DecimalField(_("value"), max_digits=18, decimal_places=4, null=True, blank=True)
    # How many records the figure is over (tickets, refunds, requests, cases).
    sample = models.PositiveIntegerField(_("records counted"), null=True, blank=True)
    computed_at = models.DateTimeField(_("computed"))

    class Meta:
        ordering = ("period_days", "key")
        verbose_name = _("trust centre figure")
        verbose_name_plural = _("trust centre figures")
        constraints = [
            models.UniqueConstraint(fields=["key", "period_days"], name="trustfigure_key_period_uniq"),
        ]

    def __str__(self):
        return f"{self.key} ({self.period_days} d) = {self.value}"
