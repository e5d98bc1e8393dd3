"""The captcha a risk rule asks for (action "captcha"): an ALTCHA proof-of-work, self-hosted.

No third-party service is called, by the browser or by the server, so it works inside China;
there are no images to read, so it is accessible. The browser's widget (vendored from npm
``altcha`` into static/vendor/altcha/, started by static/js/captcha.js) fetches a challenge from
``challenge_view``, finds the counter whose PBKDF2 key starts with the challenge's prefix (about
a second on a phone), and puts the payload into the form's ``altcha`` field.

- a challenge is signed (HMAC, ``RISK_CAPTCHA_HMAC_KEY``, derived from SECRET_KEY when unset),
  so its cost and expiry cannot be changed by the client; it expires after
  ``RISK_CAPTCHA_EXPIRES_SECONDS``;
- a solution is accepted once: its challenge's signature is stored in the cache until the
  challenge expires (``cache.add``, atomic on Redis), so a replayed payload is refused;
- it is only asked for when a rule's count passes its threshold (``risk.services._run_rules``):
  a clean buyer's first purchase never sees it.

Refusals: ``CaptchaRequired`` (none sent, or one that is not valid: expired, tampered, wrong,
used). The pages show the challenge on the same form when they catch it (``exc.code``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import altcha
from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from marketplace.errors import ServiceError

ALGORITHM = "PBKDF2/SHA-256"  # bundled in the widget's pbkdf2 worker, and WebCrypto does it natively
FIELD = "altcha"  # the form field the widget fills
MAX_PAYLOAD = 4000  # characters: a real payload is about 600


class CaptchaRequired(ServiceError):
    """A rule asks for a solved captcha, and the request brought none that holds (429: too many
    of these at once, prove you are a person)."""

    code = "captcha_required"
    status = 429

    @classmethod
    def default_message(cls) -> str:
        return _(
            "Many requests came from your network or device in a short time. To go on, please complete "
            "the verification below, then submit again."
        )


def hmac_key() -> bytes:
    """The key challenges are signed with: the setting, or one derived from SECRET_KEY."""
    key = settings.RISK_CAPTCHA_HMAC_KEY
    if key:
        return key.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"risk.captcha.altcha", hashlib.sha256).digest()


def challenge_create() -> dict:
    """A new signed challenge, as the widget reads it (JSON)."""
    challenge = altcha.create_challenge(
        ALGORITHM,
        settings.RISK_CAPTCHA_COST,
        expires_at=int(time.time()) + settings.RISK_CAPTCHA_EXPIRES_SECONDS,
        hmac_secret=hmac_key(),
    )
    return challenge.to_dict()


def captcha_check(*, payload: str, audit: Callable[[str], object] | None = None) -> None:
    """Refuse (``CaptchaRequired``, after ``audit(code)``) unless ``payload`` solves a challenge
    of ours that has not expired and has not been used; mark it used. The solution is re-derived
    (one PBKDF2 run of the challenge's signed cost), never trusted."""
    refusal = _refusal(payload)
    if refusal is not None:
        if audit is not None:
            audit(refusal.code)
        raise refusal


def _refusal(payload: str) -> CaptchaRequired | None:
    payload = (payload or "").strip()
    if not payload:
        return CaptchaRequired()
    wrong = CaptchaRequired(
        _("The verification did not succeed or has expired. Please complete it again, then submit."),
        code="captcha_invalid",
    )
    if len(payload) > MAX_PAYLOAD:
        return wrong
    try:
        result = altcha.verify_solution(payload, hmac_key())
        if not result.verified:
            return wrong
        parsed = altcha.Payload.from_base64(payload)  # it verified: it parses
        expires = int(parsed.challenge.parameters.expires_at or 0)
    except Exception:  # a hostile payload (bad hex, wrong types): the library mostly answers, not raises
        return wrong
    ttl = max(1, expires - int(time.time()) + 1)
    if not cache.add(f"risk:captcha-used:{parsed.challenge.signature}", 1, timeout=ttl):
        return wrong  # a replay: each solution is accepted once
    return None


@require_GET
@never_cache
def challenge_view(request):
    """GET: a new challenge for the widget."""
    return JsonResponse(challenge_create())
