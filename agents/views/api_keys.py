"""The agent's API keys at /agent/api-keys/: issue, rotate, revoke, restrict; recent callbacks
(sending one again is orders.views.agent_sales.api_callback_resend).

A secret is shown exactly once: in the response to the POST that issued or rotated it (marked
``no-store``), never stored in plain text, never in a redirect or the session.
"""

from django.contrib import messages
from django.db.models import F
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from compliance.services import audit_denied

from ..models import ApiKey
from ..services import api_keys
from ..services.agents import AgentError
from .dashboard import agent_required

RECENT_CALLBACKS = 20


def _deny(request, *, action: str, target: str):
    audit_denied(
        action=action, request=request, target=target, detail=f"agent {request.agent.pk}: not its own API key/callback"
    )
    raise Http404("not found")


def _page(request, *, form=None, errors=None, issued=None, status=200):
    agent = request.agent
    keys = list(agent.api_keys.order_by(F("revoked_at").desc(nulls_first=True), "-id"))
    now = timezone.now()
    for key in keys:
        key.allowed_ips = key.ip_allowlist.split()
        key.grace_active = bool(key.previous_secret and key.previous_valid_until and key.previous_valid_until > now)
    recent = list(
        # Callbacks belong to orders (orders.services.callbacks): read through the relation, as sales are.
        agent.callbacks.select_related("order", "key").order_by("-id")[:RECENT_CALLBACKS]
    )
    context = {
        "section": "api",
        "keys": keys,
        "active_count": sum(1 for k in keys if k.revoked_at is None),
        "max_keys": api_keys.MAX_ACTIVE_KEYS,
        "callbacks": recent,
        "form": form or {"name": "", "callback_url": "", "ip_allowlist": ""},
        "errors": errors or [],
        "issued": issued,
        "max_attempts": api_keys.CALLBACK_MAX_ATTEMPTS,
        "grace_hours": int(api_keys.ROTATION_GRACE.total_seconds() // 3600),
        "api_base": request.build_absolute_uri("/api/v1/"),
    }
    response = render(request, "agents/api_keys.html", context, status=status)
    if issued:
        response["Cache-Control"] = "no-store"
    return response


@never_cache
@agent_required
@require_http_methods(["GET", "POST"])
def api_keys_home(request):
    if request.method == "GET":
        return _page(request)
    form = {field: request.POST.get(field, "").strip() for field in ("name", "callback_url", "ip_allowlist")}
    try:
        key, secret = api_keys.apikey_create(agent=request.agent, **form)
    except AgentError as exc:
        return _page(request, form=form, errors=[str(exc)], status=400)
    return _page(request, issued={"key": key, "secret": secret, "rotated": False})


@never_cache
@agent_required
@require_POST
def api_key_rotate(request, key_id: int):
    try:
        key, secret = api_keys.apikey_rotate(agent=request.agent, key_id=key_id)
    except ApiKey.DoesNotExist:
        _deny(request, action="agents.api_key_rotate", target=f"apikey:{key_id}")
    except AgentError as exc:
        messages.error(request, str(exc))
        return redirect("agents:api_keys")
    return _page(request, issued={"key": key, "secret": secret, "rotated": True})


@agent_required
@require_POST
def api_key_revoke(request, key_id: int):
    try:
        revoked = api_keys.apikey_revoke(agent=request.agent, key_id=key_id)
    except ApiKey.DoesNotExist:
        _deny(request, action="agents.api_key_revoke", target=f"apikey:{key_id}")
    if revoked:
        messages.success(request, _("The key has been revoked: requests signed with it are refused from now on."))
    return redirect("agents:api_keys")


@agent_required
@require_http_methods(["GET", "POST"])
def api_key_edit(request, key_id: int):
    key = ApiKey.objects.filter(pk=key_id, agent=request.agent).first()
    if key is None:
        _deny(request, action="agents.api_key_edit", target=f"apikey:{key_id}")
    if key.revoked_at is not None:
        messages.error(request, _("This key has been revoked and cannot be changed."))
        return redirect("agents:api_keys")
    form = {"name": key.name, "callback_url": key.callback_url, "ip_allowlist": key.ip_allowlist}
    errors = []
    if request.method == "POST":
        form = {field: request.POST.get(field, "").strip() for field in ("name", "callback_url", "ip_allowlist")}
        try:
            api_keys.apikey_update(agent=request.agent, key_id=key.pk, **form)
        except AgentError as exc:
            errors = [str(exc)]
        else:
            messages.success(request, _("Key “%(name)s” saved.") % {"name": form["name"]})
            return redirect("agents:api_keys")
    context = {"section": "api", "key": key, "form": form, "errors": errors}
    return render(request, "agents/api_key_edit.html", context, status=400 if errors else 200)
