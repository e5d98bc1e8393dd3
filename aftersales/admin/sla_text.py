"""An SLA event's detail in the reader's language.

The sweep stores each detail in English, one fixed sentence per kind (``aftersales.services.sla``), so
the record reads the same whatever language staff use; this turns it into the active language
for the admin. A detail in any other form is shown as stored.
"""

import re

from django.utils.translation import gettext as _

from ..models import SlaEvent, Ticket

_WARNED = re.compile(r"first response due (?P<due>.+) \(in (?P<left>\d+h\d+m)\)")
_BREACHED = re.compile(r"due (?P<due>.+), seen (?P<late>\d+h\d+m) late")
_ESCALATED = re.compile(r"priority (?P<old>\w+) -> (?P<new>\w+); group (?P<group>.+)")
_SPAN = re.compile(r"(?P<h>\d+)h(?P<m>\d+)m")


def _span(text: str) -> str:
    match = _SPAN.fullmatch(text)
    if not match:
        return text
    return _("%(hours)sh %(minutes)sm") % {"hours": int(match["h"]), "minutes": match["m"]}


def _priority(name: str) -> str:
    try:
        return str(Ticket.Priority[name.upper()].label)
    except KeyError:
        return name


def sla_detail_text(event: SlaEvent) -> str:
    detail = event.detail or ""
    if event.kind == SlaEvent.Kind.WARNED and (m := _WARNED.fullmatch(detail)):
        return _("first response due %(due)s (in %(left)s)") % {"due": m["due"], "left": _span(m["left"])}
    if event.kind == SlaEvent.Kind.BREACHED and (m := _BREACHED.fullmatch(detail)):
        return _("due %(due)s, seen %(late)s late") % {"due": m["due"], "late": _span(m["late"])}
    if event.kind == SlaEvent.Kind.ESCALATED and (m := _ESCALATED.fullmatch(detail)):
        return _("priority %(old)s → %(new)s; group %(group)s") % {
            "old": _priority(m["old"]),
            "new": _priority(m["new"]),
            "group": m["group"],
        }
    return detail
