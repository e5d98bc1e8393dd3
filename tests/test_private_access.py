"""A buyer's private objects outside admin follow model permissions, never the staff flag.

``PRIVATE_VIEWS`` lists every view that serves a buyer's private object (a ticket, its images,
a refund request, an order, its codes, a payment page, the wallet export, the arbitration
dossier). Each is walked as six people: staff with no permission, staff with only unrelated
permissions, staff with the permission the object's admin requires, the owner, another buyer
and nobody (logged out). Only the owner and, where staff have a door outside admin, staff with
the admin's permission get anything; everyone else gets what a missing object gives (404, the
login page, or admin's 403) and the body shows nothing of the buyer's.

``test_every_url_with_an_object_id_is_walked_or_declared`` fails when a new URL pattern that
takes an id, number, uuid or slug appears without being walked here or declared not private.
"""

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.admin.sites import site as admin_site
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, include, path, reverse
from PIL import Image

from aftersales.admin import arbitration as admin_arbitration  # noqa: F401 (admin registered)
from aftersales.models import ArbitrationCase, RefundRequest, Ticket, TicketAttachment
from aftersales.services import arbitration, disputes, no_reason, tickets
from catalog.services import code_plaintext
from marketplace.permissions import staff_can_view
from orders.models import CodeReveal, Order, OrderCode
from orders.services import orders as order_services
from payments.models import Payment
from payments.services.payments import sandbox_pay
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

ROLES = ("staff_none", "staff_unrelated", "staff_right", "owner", "other_buyer", "anonymous")
UNRELATED_PERMISSIONS = ("catalog.change_product", "catalog.view_product", "agents.view_agent")


@pytest.fixture(autouse=True)
def _private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    return settings.PRIVATE_MEDIA_ROOT


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (23, 17), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class _Upload(io.BytesIO):
    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.size = name, len(data)


@dataclass
class World:
    """One buyer's private things, each carrying a marker that must not leak."""

    buyer: object
    delivered: Order
    pending: Order
    ticket: Ticket
    image: TicketAttachment
    note_image: TicketAttachment
    refund_request: RefundRequest
    case: ArbitrationCase
    unrevealed: OrderCode
    image_bytes: bytes
    note_image_bytes: bytes
    markers: list[str] = field(default_factory=list)


@pytest.fixture
def world(db, django_capture_on_commit_callbacks) -> World:
    buyer = UserFactory(email="private-buyer@example.com")
    product = ProductFactory()
    add_stock(product, 5, numbered=True)
    delivered = order_services.order_place(buyer=buyer, product_id=product.pk, quantity=3, idempotency_key="delivered")
    with django_capture_on_commit_callbacks(execute=True):  # fulfilment runs on commit
        sandbox_pay(order_number=delivered.number)
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.DELIVERED
    pending = order_services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="pending")
    codes = list(OrderCode.objects.filter(order=delivered).order_by("pk"))
    CodeReveal.objects.create(order_code=codes[0], user=buyer, ip="203.0.113.7", user_agent="test")
    refund_request = no_reason.refund_request_create(
        user=buyer, order=delivered, order_code_ids=[codes[0].pk], reason="PRIVATE-REFUND-REASON", idempotency_key="r"
    )
    ticket = refund_request.ticket
    assert ticket is not None
    Ticket.objects.filter(pk=ticket.pk).update(subject="PRIVATE-TICKET-SUBJECT")
    image_bytes, note_image_bytes = _png((201, 13, 77)), _png((13, 201, 77))
    tickets.ticket_reply(
        ticket=ticket, author=buyer, body="PRIVATE-BUYER-MESSAGE", attachments=[_Upload(image_bytes, "mine.png")]
    )
    superuser = UserFactory(is_staff=True, is_superuser=True)
    tickets.ticket_reply(
        ticket=ticket,
        author=superuser,
        body="PRIVATE-INTERNAL-NOTE",
        staff=True,
        internal=True,
        attachments=[_Upload(note_image_bytes, "note.png")],
    )
    disputes.dispute_reject(ticket=ticket, staff=superuser, reason="PRIVATE-DECISION-REASON")
    ticket.refresh_from_db()
    case = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="PRIVATE-BUYER-STATEMENT")
    image = TicketAttachment.objects.get(message__ticket=ticket, message__internal=False)
    note_image = TicketAttachment.objects.get(message__ticket=ticket, message__internal=True)
    secrets = [code_plaintext(c.code)[1] for c in codes]
    return World(
        buyer=buyer,
        delivered=delivered,
        pending=pending,
        ticket=ticket,
        image=image,
        note_image=note_image,
        refund_request=refund_request,
        case=case,
        unrevealed=codes[1],
        image_bytes=image_bytes,
        note_image_bytes=note_image_bytes,
        markers=[
            "PRIVATE-TICKET-SUBJECT",
            "PRIVATE-BUYER-MESSAGE",
            "PRIVATE-INTERNAL-NOTE",
            "PRIVATE-REFUND-REASON",
            "PRIVATE-DECISION-REASON",
            "PRIVATE-BUYER-STATEMENT",
            "private-buyer@example.com",
            *secrets,
        ],
    )


def _staff(*perms: str):
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


# --- what each person gets -------------------------------------------------------------------

LOGIN = "login"  # 302 to the site's login page
ADMIN_LOGIN = "admin-login"  # 302 to admin's login page


@dataclass(frozen=True)
class PrivateView:
    """A view outside the admin's own pages that serves a buyer's private object.

    ``perm``: the model permission the object's admin requires (what "staff_right" holds);
    ``staff``: what staff holding it get (404 where staff have no door outside admin);
    ``owner``: what the owner gets; ``denied``: what everyone else logged in gets."""

    name: str
    method: str
    url: object  # World -> str
    perm: str
    owner: object  # int, or a (status, check) pair
    staff: object = 404
    denied: int = 404
    anonymous: str = LOGIN
    data: dict = field(default_factory=dict)


def _image(which):
    return lambda w, r: r.status_code == 200 and b"".join(r.streaming_content) == getattr(w, which)


def _redirect_to(url_of):
    return lambda w, r: r.status_code == 302 and r["Location"] == url_of(w)


def _contains(text_of):
    return lambda w, r: r.status_code == 200 and text_of(w) in r.content.decode()


def _zip(w, r):
    if r.status_code != 200:
        return False
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    return "summary.html" in names and any(n.startswith("attachments/") for n in names)


PRIVATE_VIEWS = [
    PrivateView(
        "aftersales:attachment",
        "get",
        lambda w: reverse("aftersales:attachment", args=[w.image.public_id]),
        perm="aftersales.view_ticket",
        owner=_image("image_bytes"),
        staff=_image("image_bytes"),
    ),
    PrivateView(  # an image on staff's internal note: staff only, not even the buyer
        "aftersales:attachment",
        "get",
        lambda w: reverse("aftersales:attachment", args=[w.note_image.public_id]),
        perm="aftersales.view_ticket",
        owner=404,
        staff=_image("note_image_bytes"),
    ),
    PrivateView(
        "aftersales:ticket",
        "get",
        lambda w: reverse("aftersales:ticket", args=[w.ticket.number]),
        perm="aftersales.view_ticket",
        owner=_contains(lambda w: "PRIVATE-BUYER-MESSAGE"),
        staff=_redirect_to(lambda w: reverse("admin:aftersales_ticket_change", args=[w.ticket.pk])),
    ),
    PrivateView(
        "aftersales:ticket_reopen",
        "post",
        lambda w: reverse("aftersales:ticket_reopen", args=[w.ticket.number]),
        perm="aftersales.change_ticket",
        owner=_redirect_to(lambda w: reverse("aftersales:ticket", args=[w.ticket.number])),
    ),
    PrivateView(
        "aftersales:ticket_close",
        "post",
        lambda w: reverse("aftersales:ticket_close", args=[w.ticket.number]),
        perm="aftersales.change_ticket",
        owner=_redirect_to(lambda w: reverse("aftersales:ticket", args=[w.ticket.number])),
    ),
    PrivateView(
        "aftersales:arbitration",
        "get",
        lambda w: reverse("aftersales:arbitration", args=[w.ticket.number]),
        perm="aftersales.view_ticket",
        owner=_contains(lambda w: "PRIVATE-BUYER-STATEMENT"),
        staff=_redirect_to(lambda w: reverse("admin:aftersales_arbitrationcase_change", args=[w.case.pk])),
    ),
    PrivateView(
        "aftersales:arbitration_new",
        "get",
        lambda w: reverse("aftersales:arbitration_new", args=[w.ticket.number]),
        perm="aftersales.view_ticket",
        owner=_contains(lambda w: "PRIVATE-BUYER-STATEMENT"),
        staff=_redirect_to(lambda w: reverse("admin:aftersales_arbitrationcase_change", args=[w.case.pk])),
    ),
    PrivateView(
        "aftersales:refund_detail",
        "get",
        lambda w: reverse("aftersales:refund_detail", args=[w.refund_request.public_id]),
        perm="aftersales.view_refundrequest",
        owner=_contains(lambda w: w.delivered.number),
    ),
    PrivateView(
        "aftersales:refund_new",
        "get",
        lambda w: reverse("aftersales:refund_new", args=[w.delivered.number]),
        perm="aftersales.view_refundrequest",
        owner=_contains(lambda w: w.delivered.number),
    ),
    PrivateView(  # the new-ticket form about an order (the order travels in the query string)
        "aftersales:ticket_new",
        "get",
        lambda w: reverse("aftersales:ticket_new") + f"?order={w.delivered.number}",
        perm="aftersales.view_ticket",
        owner=_contains(lambda w: w.delivered.number),
    ),
    PrivateView(
        "orders:detail",
        "get",
        lambda w: reverse("orders:detail", args=[w.delivered.number]),
        perm="orders.view_order",
        owner=_contains(lambda w: w.delivered.number),
    ),
    PrivateView(
        "orders:status",
        "get",
        lambda w: reverse("orders:status", args=[w.pending.number]),
        perm="orders.view_order",
        owner=200,
    ),
    PrivateView(
        "orders:cancel",
        "post",
        lambda w: reverse("orders:cancel", args=[w.pending.number]),
        perm="orders.change_order",
        owner=_redirect_to(lambda w: reverse("orders:detail", args=[w.pending.number])),
    ),
    PrivateView(
        "orders:reveal",
        "post",
        lambda w: reverse("orders:reveal", args=[w.delivered.number, w.unrevealed.pk]),
        perm="catalog.reveal_cardcode",
        owner=_contains(lambda w: code_plaintext(w.unrevealed.code)[1]),
    ),
    PrivateView(
        "payments:choose",
        "get",
        lambda w: reverse("payments:choose", args=[w.pending.number]),
        perm="payments.view_payment",
        owner=_contains(lambda w: w.pending.number),
    ),
    PrivateView(
        "payments:start",
        "post",
        lambda w: reverse("payments:start", args=[w.pending.number, "sandbox"]),
        perm="payments.view_payment",
        owner=_redirect_to(lambda w: reverse("payments:sandbox", args=[w.pending.number])),
    ),
    PrivateView(
        "payments:balance",
        "post",
        lambda w: reverse("payments:balance", args=[w.pending.number]),
        perm="payments.view_payment",
        owner=_redirect_to(lambda w: reverse("payments:choose", args=[w.pending.number])),  # no balance
    ),
    PrivateView(
        "payments:status",
        "get",
        lambda w: reverse("payments:status", args=[w.pending.number]),
        perm="payments.view_payment",
        owner=200,
    ),
    PrivateView(
        "payments:sandbox",
        "get",
        lambda w: reverse("payments:sandbox", args=[w.pending.number]),
        perm="payments.view_payment",
        owner=_contains(lambda w: w.pending.number),
    ),
    PrivateView(  # everyone gets their own transactions: the others' CSV holds nothing of the buyer's
        "wallet:export",
        "get",
        lambda w: reverse("wallet:export"),
        perm="payments.view_payment",
        owner=_contains(lambda w: Payment.objects.get(order=w.delivered).number),
        staff=200,
        denied=200,
    ),
    PrivateView(  # the dossier is an admin page of its own: admin's answers (403, admin login)
        "admin:aftersales_arbitrationcase_dossier",
        "post",
        lambda w: reverse("admin:aftersales_arbitrationcase_dossier", args=[w.case.pk]),
        perm="aftersales.change_arbitrationcase",
        owner=ADMIN_LOGIN,
        staff=_zip,
        denied=ADMIN_LOGIN,
        anonymous=ADMIN_LOGIN,
    ),
]


def _expected(view: PrivateView, role: str):
    if role == "anonymous":
        return view.anonymous
    if role == "owner":
        return view.owner
    if role == "staff_right":
        return view.staff
    if role in ("staff_none", "staff_unrelated") and view.denied == ADMIN_LOGIN:
        return 403  # staff get into admin, and admin refuses
    return view.denied


def _user(role: str, view: PrivateView, w: World):
    return {
        "staff_none": lambda: _staff(),
        "staff_unrelated": lambda: _staff(*UNRELATED_PERMISSIONS),
        "staff_right": lambda: _staff(view.perm),
        "owner": lambda: w.buyer,
        "other_buyer": lambda: UserFactory(),
        "anonymous": lambda: None,
    }[role]()


def _body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", PRIVATE_VIEWS, ids=[f"{v.name}:{i}" for i, v in enumerate(PRIVATE_VIEWS)])
def test_private_view(client, world, view, role):
    assert view.perm not in UNRELATED_PERMISSIONS
    user = _user(role, view, world)
    if user is not None:
        client.force_login(user)
    url = view.url(world)

    response = getattr(client, view.method)(url, view.data)

    expected = _expected(view, role)
    if expected == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    elif expected == ADMIN_LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    elif callable(expected):
        assert expected(world, response), (response.status_code, response.get("Location"))
    else:
        assert response.status_code == expected, (response.status_code, response.get("Location"))
    granted = role == "owner" or (role == "staff_right" and callable(view.staff))
    if not granted:
        body = _body(response)
        for marker in world.markers:
            assert marker.encode() not in body, f"{marker} leaked to {role}"
        assert world.image_bytes not in body and world.note_image_bytes not in body
        assert world.delivered.number.encode() not in body and world.pending.number.encode() not in body


# --- the permission is the admin's own ----------------------------------------------------------


@pytest.mark.parametrize(
    "perms, may_view",
    [
        ((), False),
        (UNRELATED_PERMISSIONS, False),
        (("aftersales.view_ticket",), True),
        (("aftersales.change_ticket",), True),
        (("aftersales.view_ticketattachment",), False),
    ],
)
def test_staff_see_tickets_outside_admin_exactly_when_the_ticket_admin_lets_them(perms, may_view):
    user = _staff(*perms)
    request = RequestFactory().get("/admin/")
    request.user = user

    assert admin_site._registry[Ticket].has_view_permission(request) is may_view
    assert staff_can_view(user, Ticket) is may_view
    assert tickets.staff_may_view(user) is may_view


def test_an_inactive_or_non_staff_holder_of_the_permission_gets_nothing(client, world):
    url = reverse("aftersales:attachment", args=[world.image.public_id])
    for user in (_staff("aftersales.view_ticket"), UserFactory()):
        if not user.is_staff:
            user.user_permissions.add(Permission.objects.get(codename="view_ticket"))
        else:
            user.is_active = False
            user.save(update_fields=["is_active"])
        client.force_login(user)
        assert client.get(url).status_code in (302, 404)  # an inactive user is logged out


def test_staff_actions_on_a_buyers_ticket_need_the_admins_permission(world):
    from django.core.exceptions import PermissionDenied

    viewer = _staff("aftersales.view_ticket")
    for call in (
        lambda: tickets.ticket_reply(ticket=world.ticket, author=viewer, body="x", staff=True),
        lambda: tickets.ticket_close(ticket=world.ticket, actor=viewer, reason="x"),
        lambda: tickets.ticket_assign(ticket=world.ticket, assignee=viewer, actor=viewer),
        lambda: arbitration.arbitration_dossier(case=world.case, staff=_staff("aftersales.change_ticket")),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert arbitration.arbitration_dossier(case=world.case, staff=_staff("aftersales.change_arbitrationcase"))


# --- addresses ----------------------------------------------------------------------------------


def test_attachment_and_refund_addresses_carry_no_sequential_id(client, world):
    client.force_login(world.buyer)
    page = client.get(reverse("aftersales:ticket", args=[world.ticket.number])).content.decode()
    assert f"/support/attachments/{world.image.public_id}/" in page
    assert f"/support/attachments/{world.image.pk}/" not in page
    assert client.get(f"/support/attachments/{world.image.pk}/").status_code == 404
    assert client.get(f"/support/refunds/{world.refund_request.pk}/").status_code == 404
    assert reverse("aftersales:refund_detail", args=[world.refund_request.public_id]).endswith(
        f"/{world.refund_request.public_id}/"
    )


def test_an_unknown_attachment_looks_like_a_forbidden_one(client, world):
    import uuid

    client.force_login(UserFactory())
    forbidden = client.get(reverse("aftersales:attachment", args=[world.image.public_id]))
    unknown = client.get(reverse("aftersales:attachment", args=[uuid.uuid4()]))
    assert forbidden.status_code == unknown.status_code == 404
    assert forbidden.content == unknown.content


def test_the_dossier_names_images_without_database_ids(world):
    data = arbitration.arbitration_dossier(case=world.case, staff=UserFactory(is_staff=True, is_superuser=True))
    archive = zipfile.ZipFile(io.BytesIO(data))
    images = [n for n in archive.namelist() if n.startswith("attachments/")]
    assert images == ["attachments/01-mine.png"]  # the internal note's image stays out
    assert archive.read(images[0]) == world.image_bytes
    assert "attachments/01-mine.png" in archive.read("summary.html").decode()
    assert "attachments/01-mine.png" in archive.read("messages.csv").decode("utf-8-sig")


# --- how the file is served ---------------------------------------------------------------------


def test_the_image_response_is_private_inline_and_not_sniffed(client, world):
    client.force_login(world.buyer)
    response = client.get(reverse("aftersales:attachment", args=[world.image.public_id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="mine.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert "sandbox" in response["Content-Security-Policy"]


@pytest.mark.parametrize("name", ["wallet:export"])
def test_exports_are_not_cached(client, world, name):
    client.force_login(world.buyer)
    response = client.get(reverse(name))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_private_media_is_not_served_as_static_files(client, world, settings):
    stored = Path(settings.PRIVATE_MEDIA_ROOT) / world.image.path
    assert stored.read_bytes() == world.image_bytes
    for url in (
        f"{settings.STATIC_URL}{world.image.path}",
        f"{settings.STATIC_URL}private/{world.image.path}",
        f"{settings.STATIC_URL}../var/private/{world.image.path}",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert world.image_bytes not in _body(response)


def test_settings_refuse_private_media_inside_a_static_folder(tmp_path):
    base = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "PRIVATE_MEDIA_ROOT": str(base / "static" / "private"),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PRIVATE_MEDIA_ROOT" in result.stderr and "static" in result.stderr


# --- no view slips through ----------------------------------------------------------------------

# URL patterns that take an object's id, number, uuid or slug and serve nothing private of a
# buyer's, each with the reason. Anything else with such a parameter must be in PRIVATE_VIEWS.
NOT_BUYER_PRIVATE = {
    "catalog:category": "public catalogue page",
    "catalog:product": "public product page",
    "orders:checkout": "public product's checkout form (the order is the buyer's once placed)",
    "storefront:home": "an agent's public storefront",
    "storefront:logo": "an agent's public storefront logo",
    "storefront:product": "an agent's public storefront product",
    "storefront:buy": "an agent's public storefront product's buy form",
    "storefront:restock_subscribe": "a public product's restock alert form (tests/test_restock_alerts.py)",
    "catalog:restock_subscribe": "a public product's restock alert form (tests/test_restock_alerts.py)",
    "catalog:restock_confirm": "a signed, expiring confirmation link of a restock alert (tests/test_restock_alerts.py)",
    "catalog:restock_unsubscribe": "an alert's unguessable unsubscribe token, the alert's own email and product only "
    "(tests/test_restock_alerts.py)",
    "storefront:operator": "an agent's public storefront's operator information (public fields only)",
    "storefront:operator_licence": "a storefront operator's business licence, public while the shop is "
    "(tests/test_storefront_operator_info.py)",
    "compliance:qualification_image": "a licence image, public while shown (tests/test_qualifications.py)",
    "rights:document": "a review's or notice's document: staff with the model permission only, 404 to anyone "
    "else (tests/test_rights_reviews.py)",
    "rights:notice_detail": "a rights notice's public record (电子商务法 第四十四条), nothing private on it "
    "(tests/test_rights_publication.py)",
    "referrals:landing": "an invitation link: sets the signed inviter cookie, shows nothing of the inviter "
    "(tests/test_referrals.py)",
    "legal:document": "a published agreement, public (tests/test_agreements.py)",
    "supply:callback": "a supplier's signed callback (POST only, verified with the connection's secret; forged "
    "or replayed: 400, tests/test_upstream.py): no page, nothing of anyone's shown",
    # The agent's own storefront's posters: the storefront is the signed-in agent's, never an id
    # in the address; the product id is a public catalogue product, 404 unless the agent's shop
    # sells it (tests/test_share_tools.py).
    "agents:poster_shop": "the signed-in agent's own storefront poster (tests/test_share_tools.py)",
    "agents:poster_product": "a public product's poster for the signed-in agent's own shop (tests/test_share_tools.py)",
    # The agent's own coupons: another agent's coupon id is a 404 (tests/test_coupons_pages.py).
    "agents:coupon_detail": "the signed-in agent's own coupon, 404 for another's (tests/test_coupons_pages.py)",
    "agents:coupon_generate": "the signed-in agent's own coupon, 404 for another's (tests/test_coupons_pages.py)",
    "agents:coupon_codes_csv": "the signed-in agent's own coupon's codes, 404 for another's "
    "(tests/test_coupons_pages.py)",
    "agents:coupon_pause": "the signed-in agent's own coupon, 404 for another's (tests/test_coupons_pages.py)",
    "legal:version": "a published agreement's version, public (tests/test_agreements.py)",
    "payments:qr": "a cashier's QR code as an image for a browser without JavaScript: a token this server "
    "signed for the cashier page it showed, 404 for any other (tests/test_cashier_qr.py)",
    # Guests' orders (no account): served only to a browser whose session holds the order (it
    # placed it or opened its signed link), codes only after a proof; otherwise 404 for every
    # visitor and member alike (tests/test_guest_checkout.py).
    "orders:guest_link": "a signed, expiring link to a guest order (tests/test_guest_checkout.py)",
    "orders:guest_detail": "a guest order, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_status": "a guest order's status, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_unlock": "a guest order's proof, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_code_send": "a guest order's proof, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_code_check": "a guest order's proof, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_cancel": "a guest order, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_password_set": (
        "a guest order's query password, set only by the session that placed it after an email refusal"
        " (tests/test_email_refusal_page.py)"
    ),
    "orders:guest_reveal": "a proved guest order's code, for the browser that holds it (tests/test_guest_checkout.py)",
    "orders:guest_lookup_link": "a one-time, hashed, expiring lookup link (tests/test_guest_lookup.py)",
    # A guest order's after-sales (no account): only for the browser that holds the order and
    # proved it (query password or emailed code); the ticket, request or image must be of that
    # order; 404 for everyone else, 403 for a POST without the proof (tests/test_guest_aftersales.py).
    **{
        f"aftersales_guest:{name}": "a proved guest order's after-sales (tests/test_guest_aftersales.py)"
        for name in (
            "refund_new",
            "refund_detail",
            "ticket_new",
            "ticket",
            "ticket_reopen",
            "ticket_close",
            "arbitration",
            "attachment",
        )
    },
    "payments-notify": "gateway callbacks, verified by signature",
    "payments-notify-refund": "gateway callbacks, verified by signature",
    "api:product": "the agents' API: public product data",
    "api:order": "the agents' API: signed requests, the calling agent's own orders (tests/test_api.py)",
    "api:order_by_number": "the agents' API: signed requests, the calling agent's own orders (tests/test_api.py)",
    "agents:join": "an invitation code, the invitee's page",
    "agents:downline_detail": "the agent's own downline, scoped to request.agent; no staff door",
    "agents:invitation_revoke": "the agent's own invitation, scoped to request.agent; no staff door",
    "agents:storefront_price": "the agent's own retail price, scoped to request.agent; no staff door",
    "agents:api_key_edit": "the agent's own API key, scoped to request.agent; no staff door",
    "agents:api_key_rotate": "the agent's own API key, scoped to request.agent; no staff door",
    "agents:api_key_revoke": "the agent's own API key, scoped to request.agent; no staff door",
    "agents:api_callback_resend": "the agent's own callback, scoped to request.agent; no staff door",
    "agents:withdrawal_detail": "the agent's own withdrawal, scoped to request.agent; no staff door",
}
# An integer in a private address is allowed only inside an object the URL already scopes to
# its owner by an unguessable key (here: an order's code, under the order's random number).
SCOPED_INTEGERS = {"orders:reveal": "code_id is looked up among the codes of the buyer's own order"}


def _walk(patterns, prefix="", namespace=None, converters=None, module=""):
    for p in patterns:
        found = {**(converters or {}), **getattr(p.pattern, "converters", {})}
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            ns = p.namespace or namespace
            ns = f"{namespace}:{p.namespace}" if namespace and p.namespace else ns
            yield from _walk(p.url_patterns, route, ns, found, getattr(p.urlconf_module, "__name__", module))
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else p.name
            yield name, route, found, getattr(p.callback, "__module__", "") or module


def _project_patterns(patterns=None):
    """Every named URL pattern outside admin's own and the sign-in flow (allauth), with its converters."""
    for name, route, converters, module in _walk(get_resolver().url_patterns if patterns is None else patterns):
        if route.startswith("admin/") or module.startswith(("allauth", "django.")) or route.startswith("accounts/"):
            continue
        yield name, route, converters


def _unaccounted(patterns) -> list[str]:
    walked = {v.name for v in PRIVATE_VIEWS}
    return [
        f"{name} ({route})"
        for name, route, converters in _project_patterns(patterns)
        if converters and name not in walked and name not in NOT_BUYER_PRIVATE
    ]


def test_every_url_with_an_object_id_is_walked_or_declared():
    walked = {v.name for v in PRIVATE_VIEWS}
    missing = _unaccounted(get_resolver().url_patterns)
    assert not missing, (
        f"A URL takes an object id but is neither walked in PRIVATE_VIEWS nor declared in NOT_BUYER_PRIVATE: {missing}"
    )
    known = {name for name, _, _ in _project_patterns()} | {"admin:aftersales_arbitrationcase_dossier"}
    assert walked <= known and set(NOT_BUYER_PRIVATE) <= known  # no stale entries


def test_private_addresses_use_no_sequential_ids():
    walked = {v.name for v in PRIVATE_VIEWS}
    offenders = [
        f"{name} ({route})"
        for name, route, converters in _project_patterns()
        if name in walked
        and name not in SCOPED_INTEGERS
        and any(type(c).__name__ == "IntConverter" for c in converters.values())
    ]
    assert not offenders


def test_the_guard_reports_a_new_view_it_was_not_told_about():
    def receipt(request, pk):  # a new private view someone forgot to walk
        raise AssertionError

    extra = [path("support/", include(([path("receipts/<uuid:pk>/", receipt, name="receipt")], "aftersales")))]

    assert _unaccounted(extra + get_resolver().url_patterns) == ["aftersales:receipt (support/receipts/<uuid:pk>/)"]
    assert _unaccounted(get_resolver().url_patterns) == []
