from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache

from . import selectors, services
from .forms import AcceptForm
from .middleware import SESSION_KEY
from .models import AgreementDocument


def _kind(kind: str) -> str:
    if kind not in AgreementDocument.values:
        raise Http404
    return kind


def index(request):
    """/legal/: every document in force, and the versions published but not yet in effect."""
    now = timezone.now()
    force, coming = selectors.in_force(now=now), selectors.upcoming(now=now)
    documents = [
        {"kind": kind, "label": label, "current": force.get(kind), "upcoming": coming.get(kind)}
        for kind, label in AgreementDocument.choices
        if kind in force or kind in coming
    ]
    return render(request, "legal/index.html", {"documents": documents})


def _version_page(request, kind: str, version_label: str | None):
    now = timezone.now()
    force, coming = selectors.in_force(now=now).get(kind), selectors.upcoming(now=now).get(kind)
    chosen = force or coming if version_label is None else None
    label = chosen.version if chosen is not None else version_label
    version = selectors.version_get(kind=kind, version=label) if label else None
    if version is None:
        raise Http404
    history = selectors.kind_versions(kind=kind)
    return render(
        request,
        "legal/document.html",
        {
            "version": version,
            "label": AgreementDocument(kind).label,
            "in_force": force,
            "upcoming": coming,
            "is_current": force is not None and force.id == version.pk,
            "is_upcoming": version.effective_at > now,
            "earlier": [v for v in history if v.effective_at <= now and (force is None or v.id != force.id)],
        },
    )


def document(request, kind: str):
    """/legal/<kind>/: the version in force (or, before the first takes effect, the coming one)."""
    return _version_page(request, _kind(kind), None)


def version_detail(request, kind: str, version: str):
    return _version_page(request, _kind(kind), version)


def _safe_next(request, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}, require_https=False):
        return value
    return "/"


@never_cache
@login_required
def accept(request):
    """The versions in force the member has not accepted yet; accepting records them (with the
    IP and user agent) and returns to the page they were on."""
    pending = selectors.user_pending(user=request.user)
    form = AcceptForm(request.POST or None, initial={"next": request.GET.get("next", "")})
    if request.method == "POST":
        if not pending:
            return redirect(_safe_next(request, request.POST.get("next", "")))
        if form.is_valid():
            services.agreements_accept(versions=pending, user=request.user, request=request)
            request.session.pop(SESSION_KEY, None)
            return redirect(_safe_next(request, form.cleaned_data["next"]))
    elif not pending:
        return redirect(_safe_next(request, request.GET.get("next", "")))
    return render(
        request,
        "legal/accept.html",
        {"pending": pending, "form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
        status=400 if form.errors else 200,
    )
