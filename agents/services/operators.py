"""Storefront operators' identities: the agent submits, staff verify or reject, the number is revealed
only to staff holding the permission (audited).

网络交易监督管理办法 第二十四条: a platform collects its operators' true identity, address, contact
details and licences, verifies and registers them, and re-checks them at least every six months;
第二十五条 has them reported every January and July (``agents.selectors.operators_report_rows``).
A storefront opens (``storefronts.storefront_open``) and its public pages answer
(``storefronts.storefront_for_slug``) only while its agent's identity is verified.
"""

import re
from datetime import date

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance.identity import IdNumberError, age_on, id_number_validate
from compliance.models import AuditEvent
from compliance.services import (
    QualificationError,
    audit_denied,
    audit_record,
    qualification_image_encode,
    uscc_validate,
)
from marketplace import crypto
from marketplace.errors import Forbidden, NotFound

from ..models import OPERATOR_IDENTITY_FLOW, Agent, OperatorIdentity, OperatorIdentityStatusChange
from ..selectors import id_number_of
from .agents import AgentError

Kind = OperatorIdentity.Kind
Status = OperatorIdentity.Status
REVEAL_PERMISSION = "agents.reveal_operator_id_number"
ADULT_AGE = 18  # 民法典 第十八条: an adult has full civil capacity to run a shop on their own
# A mainland mobile number (11 digits from 13x to 19x) or a landline with its area code.
_PHONE_RE = re.compile(r"^(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
KEEP = object()  # operator_identity_submit(licence_image=KEEP): the stored image stays


class OperatorError(AgentError):
    """An operator identity refused as submitted; ``field`` names the form field."""

    code = "operator_identity_invalid"


class OperatorNotVerified(AgentError):
    """The storefront needs its operator's verified identity first."""

    code = "operator_not_verified"
    status = 409

    @classmethod
    def default_message(cls) -> str:
        return _(
            "Your operator identity must be verified before your storefront can open: "
            "submit it under Storefront › Operator identity."
        )


def _text(value, *, field: str, max_length: int, required: bool = True) -> str:
    text = re.sub(r"\s+", " ", str(value or "")).strip()
    if required and not text:
        raise OperatorError(_("This field is required."), field=field)
    if len(text) > max_length:
        raise OperatorError(
            _("At most %(n)d characters (this has %(m)d).") % {"n": max_length, "m": len(text)}, field=field
        )
    return text


def _phone(value) -> str:
    phone = re.sub(r"[\s()（）]", "", str(value or "")).removeprefix("+86")
    if not phone:
        raise OperatorError(_("This field is required."), field="phone")
    if not _PHONE_RE.match(phone):
        raise OperatorError(
            _("Enter a mainland mobile number (11 digits) or a landline with its area code, e.g. 010-12345678."),
            field="phone",
        )
    return phone


def _id_number(value, *, today: date) -> str:
    try:
        number = id_number_validate(value, today=today)
    except IdNumberError as exc:
        raise OperatorError(str(exc), field="id_number") from None
    if age_on(number.birth_date, today) < ADULT_AGE:
        raise OperatorError(_("A storefront operator must be at least 18 years old."), field="id_number")
    return number.number


def _credit_code(value) -> str:
    try:
        return uscc_validate(value)
    except QualificationError as exc:
        raise OperatorError(str(exc), field="credit_code") from None


def _licence_image(uploaded_file) -> bytes:
    try:
        return qualification_image_encode(data=uploaded_file.read(5 * 1024 * 1024 + 1))
    except QualificationError as exc:
        raise OperatorError(str(exc), field="licence_image") from None


@transaction.atomic
def operator_identity_submit(
    *,
    agent: Agent,
    kind: str,
    legal_name: str,
    address: str,
    phone: str,
    id_number: str = "",
    company_name: str = "",
    credit_code: str = "",
    small_sales_declared: bool = False,
    licence_image=KEEP,
    request=None,
) -> OperatorIdentity:
    """Submit (or change) ``agent``'s operator identity; it waits for staff's verification.

    On a change the ID number and the licence image may be left out to keep the stored ones
    (the page shows them masked); switching type asks for them again. A verified identity that
    changes is submitted again (one that does not stays verified); a rejected one always is.
    """
    today = timezone.localdate()
    if kind not in Kind.values:
        raise OperatorError(_("Choose the operator type."), field="kind")
    current = OperatorIdentity.objects.select_for_update().filter(agent=agent).first()
    same_kind = current is not None and current.kind == kind
    legal_name = _text(legal_name, field="legal_name", max_length=60)
    address = _text(address, field="address", max_length=200)
    phone = _phone(phone)
    values: dict[str, object] = {"kind": kind, "legal_name": legal_name, "address": address, "phone": phone}
    image: bytes | None = None
    if kind == Kind.INDIVIDUAL:
        if not small_sales_declared:
            raise OperatorError(
                _("Declare that your sales are sporadic and of small value, or register a business first."),
                field="small_sales_declared",
            )
        if (id_number or "").strip() or not same_kind:
            number = _id_number(id_number, today=today)
            digest = crypto.keyed_digest(number)
            if not (current is not None and current.id_number_digest == digest):
                values["id_number"], values["id_number_digest"] = crypto.encrypt(number), digest
        values.update(company_name="", credit_code="", small_sales_declared=True, licence_image=None)
    else:
        values["company_name"] = _text(company_name, field="company_name", max_length=100)
        values["credit_code"] = _credit_code(credit_code)
        if licence_image is not KEEP and licence_image is not None:
            image = _licence_image(licence_image)
            values["licence_image"] = image
        elif not same_kind or current is None or not current.licence_image:
            raise OperatorError(_("Upload an image of the business licence."), field="licence_image")
        values.update(id_number="", id_number_digest="", small_sales_declared=False)

    if current is None:
        identity = OperatorIdentity.objects.create(agent=agent, submitted_at=timezone.now(), **values)
        OperatorIdentityStatusChange.objects.create(
            identity=identity, from_status="", to_status=Status.SUBMITTED, actor=agent.user, note="submitted"
        )
        _audit("operator_identity.submit", identity, actor=agent.user, request=request, detail="first submission")
        return identity

    changed = sorted(name for name, value in values.items() if _stored(current, name) != value)
    # Unchanged: a verified or waiting identity stays as it is; a rejected one goes back to staff
    # (the agent may answer a rejection with "it is right, look again", or a new upload of the same file).
    if not changed and current.status != Status.REJECTED:
        return current
    for name, value in values.items():
        setattr(current, name, value)
    current.save(update_fields=[*values, "updated_at"])
    note = "changed: " + ", ".join(n for n in changed if n != "id_number_digest") if changed else "submitted again"
    if current.status == Status.SUBMITTED:
        current.submitted_at = timezone.now()
        current.save(update_fields=["submitted_at"])
        OperatorIdentityStatusChange.objects.create(
            identity=current, from_status=Status.SUBMITTED, to_status=Status.SUBMITTED, actor=agent.user, note=note
        )
    else:
        OPERATOR_IDENTITY_FLOW.apply(
            current,
            Status.SUBMITTED,
            actor=agent.user,
            note=note,
            update={"reject_reason": "", "verified_at": None, "reviewed_by": None, "reviewed_at": None},
        )
    _audit("operator_identity.submit", current, actor=agent.user, request=request, detail=note)
    return current


def _stored(identity: OperatorIdentity, name: str):
    value = getattr(identity, name)
    return bytes(value) if isinstance(value, memoryview) else value


def _audit(action: str, identity: OperatorIdentity, *, actor, request=None, detail: str = "") -> None:
    audit_record(
        action=action,
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=actor,
        request=request,
        target=f"operator:{identity.pk} agent:{identity.agent_id}",
        detail=detail,
    )


def _locked(identity_id: int) -> OperatorIdentity:
    identity = OperatorIdentity.objects.select_for_update().filter(pk=identity_id).first()
    if identity is None:
        raise NotFound
    return identity


@transaction.atomic
def operator_identity_verify(*, identity_id: int, by, request=None) -> OperatorIdentity:
    """Staff checked the submission against its documents: the identity is verified (the
    storefront may open). A repeat changes nothing; a decided one cannot be verified again."""
    identity = _locked(identity_id)
    if OPERATOR_IDENTITY_FLOW.apply(
        identity, Status.VERIFIED, actor=by, note="verified", update={"reviewed_by": by, "reviewed_at": timezone.now()}
    ):
        _audit("operator_identity.verify", identity, actor=by, request=request, detail=identity.get_kind_display())
    return identity


@transaction.atomic
def operator_identity_reject(*, identity_id: int, by, reason: str, request=None) -> OperatorIdentity:
    """Staff refuse the submission; the agent sees ``reason`` (required) and may submit again."""
    reason = re.sub(r"\s+", " ", reason or "").strip()
    if not reason:
        raise OperatorError(_("Give the reason: the agent reads it to correct the submission."), field="reason")
    identity = _locked(identity_id)
    if OPERATOR_IDENTITY_FLOW.apply(
        identity,
        Status.REJECTED,
        actor=by,
        note=reason,
        update={"reviewed_by": by, "reviewed_at": timezone.now(), "reject_reason": reason[:300]},
    ):
        _audit("operator_identity.reject", identity, actor=by, request=request, detail=reason)
    return identity


def operator_id_number_reveal(*, identity: OperatorIdentity, by, request=None) -> str:
    """The full ID number for staff holding ``agents.reveal_operator_id_number``; every look, and
    every refused one, is written to the audit log."""
    target = f"operator:{identity.pk} agent:{identity.agent_id}"
    if not (getattr(by, "is_active", False) and getattr(by, "is_staff", False) and by.has_perm(REVEAL_PERMISSION)):
        audit_denied(
            action="operator_identity.reveal", actor=by, request=request, target=target, detail="no permission"
        )
        raise Forbidden
    number = id_number_of(identity)
    _audit("operator_identity.reveal", identity, actor=by, request=request, detail="full ID number shown")
    return number
