"""Agents' storefronts: opening one, its settings and logo, retail prices, what it lists.

Writes are keyword-only ``<entity>_<verb>`` services; the reads the dashboard and the public
pages need sit at the end (``storefront_price_rows``, ``storefront_for_slug``). Retail prices
are resolved by ``agents.selectors.storefront_prices`` (never below the agent's cost).
"""

import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from catalog.models import Product
from marketplace.money import quantize

from ..models import Agent, OperatorIdentity, PriceKind, RetailPrice, Storefront
from ..selectors import agent_costs, storefront_prices
from .agents import AgentError, _amount
from .operators import OperatorNotVerified

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MIN, SLUG_MAX = 3, 40
# Addresses that would look official or collide with the site's own words.
RESERVED_SLUGS = frozenset(
    [
        "about",
        "account",
        "accounts",
        "admin",
        "administrator",
        "agent",
        "agents",
        "api",
        "app",
        "assets",
        "auth",
        "billing",
        "buy",
        "cart",
        "checkout",
        "config",
        "contact",
        "dashboard",
        "default",
        "docs",
        "download",
        "help",
        "home",
        "index",
        "kamen",
        "kameng",
        "kamarket",
        "kefu",
        "login",
        "logout",
        "mail",
        "media",
        "new",
        "official",
        "orders",
        "pay",
        "payment",
        "payments",
        "platform",
        "register",
        "root",
        "search",
        "security",
        "service",
        "settings",
        "shop",
        "signup",
        "site",
        "staff",
        "static",
        "status",
        "store",
        "support",
        "system",
        "test",
        "wallet",
        "webhook",
        "www",
        "guanfang",
        "kefu-center",
        "customer-service",
    ]
)
PERCENT_MAX = Decimal(1000)
PRICE_MAX = Decimal("9999999999.99")

LOGO_MAX_BYTES = 1024 * 1024
LOGO_SIZE = (256, 256)
LOGO_MAX_PIXELS = 40_000_000  # refuses decompression bombs before decoding
LOGO_FORMATS = {"PNG", "JPEG", "WEBP"}


def _clean_text(value, *, field: str, max_length: int, required: bool = False) -> str:
    text = (value or "").strip()
    if required and not text:
        raise AgentError(_("This field is required."), field=field)
    if len(text) > max_length:
        raise AgentError(
            _("At most %(n)d characters (this has %(m)d).") % {"n": max_length, "m": len(text)}, field=field
        )
    return text


def slug_validate(slug) -> str:
    """The storefront's address: 3 to 40 lowercase letters, digits and single hyphens."""
    slug = (slug or "").strip()
    if not SLUG_MIN <= len(slug) <= SLUG_MAX:
        raise AgentError(_("The address is 3 to 40 characters long."), field="slug")
    if not SLUG_RE.match(slug):
        raise AgentError(
            _("Use lowercase letters a-z, digits and single hyphens; no hyphen at the start or the end."), field="slug"
        )
    if slug in RESERVED_SLUGS:
        raise AgentError(_("“%(slug)s” is reserved: choose another address.") % {"slug": slug}, field="slug")
    return slug


def _markup(kind, value) -> tuple[str, Decimal]:
    if kind not in PriceKind.values:
        raise AgentError(_("Choose a fixed amount or a percentage."), field="default_markup_kind")
    amount = _amount(value, kind=kind, field="default_markup_value")
    if kind == PriceKind.PERCENT and amount > PERCENT_MAX:
        raise AgentError(_("A percentage markup is at most 1000%."), field="default_markup_value")
    if kind == PriceKind.FIXED and amount > PRICE_MAX:
        raise AgentError(_("This amount is too large."), field="default_markup_value")
    return kind, amount


def _price(value) -> Decimal:
    """A price in yuan to the fen: "12", "12.5" or "12.50"."""
    text = str(value if value is not None else "").strip().replace("¥", "").replace(",", "")
    if not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,2})?", text):
        try:
            Decimal(text)
        except (InvalidOperation, ValueError):
            raise AgentError(_("Enter a price in yuan, e.g. 9.90."), field="price") from None
        raise AgentError(_("Enter a positive price with at most two decimal places (fen)."), field="price")
    price = quantize(Decimal(text))
    if price <= 0:
        raise AgentError(_("The price must be more than zero."), field="price")
    if price > PRICE_MAX:
        raise AgentError(_("This price is too large."), field="price")
    return price


# --- the storefront ------------------------------------------------------------------------


@transaction.atomic
def storefront_open(
    *,
    agent: Agent,
    slug: str,
    name: str,
    notice: str = "",
    contact: str = "",
    default_markup_kind: str = PriceKind.PERCENT,
    default_markup_value: Decimal | int | str = 10,
) -> Storefront:
    """Open ``agent``'s storefront at /s/<slug>/ (one per agent; the address is unique and kept).

    Only once the agent's operator identity is verified (网络交易监督管理办法 第二十四条: the platform
    verifies and registers an operator before it sells on the platform)."""
    if not OperatorIdentity.objects.filter(agent=agent, status=OperatorIdentity.Status.VERIFIED).exists():
        raise OperatorNotVerified
    slug = slug_validate(slug)
    name = _clean_text(name, field="name", max_length=60, required=True)
    notice = _clean_text(notice, field="notice", max_length=2000)
    contact = _clean_text(contact, field="contact", max_length=200)
    kind, value = _markup(default_markup_kind, default_markup_value)
    if Storefront.objects.filter(agent=agent).exists():
        raise AgentError(_("You already have a storefront."))
    if Storefront.objects.filter(slug=slug).exists():
        raise AgentError(_("This address is taken: choose another."), field="slug")
    try:
        with transaction.atomic():
            return Storefront.objects.create(
                agent=agent,
                slug=slug,
                name=name,
                notice=notice,
                contact=contact,
                default_markup_kind=kind,
                default_markup_value=value,
            )
    except IntegrityError:  # a concurrent request took the address (or opened one) first
        if Storefront.objects.filter(agent=agent).exists():
            raise AgentError(_("You already have a storefront.")) from None
        raise AgentError(_("This address is taken: choose another."), field="slug") from None


@transaction.atomic
def storefront_update(
    *,
    storefront: Storefront,
    name: str,
    notice: str = "",
    contact: str = "",
    default_markup_kind: str,
    default_markup_value: Decimal | int | str,
    is_open: bool,
) -> Storefront:
    """The storefront's settings. A new default markup applies to future orders only."""
    name = _clean_text(name, field="name", max_length=60, required=True)
    notice = _clean_text(notice, field="notice", max_length=2000)
    contact = _clean_text(contact, field="contact", max_length=200)
    kind, value = _markup(default_markup_kind, default_markup_value)
    sf = Storefront.objects.select_for_update().get(pk=storefront.pk)
    sf.name, sf.notice, sf.contact = name, notice, contact
    sf.default_markup_kind, sf.default_markup_value, sf.is_open = kind, value, bool(is_open)
    sf.save(
        update_fields=[
            "name",
            "notice",
            "contact",
            "default_markup_kind",
            "default_markup_value",
            "is_open",
            "updated_at",
        ]
    )
    return sf


def storefront_close(*, storefront: Storefront) -> bool:
    """Close a storefront (staff, or its agent): its pages answer 404 and it sells nothing.

    Returns False when it was already closed."""
    return bool(
        Storefront.objects.filter(pk=storefront.pk, is_open=True).update(is_open=False, updated_at=timezone.now())
    )


def _logo_png(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise AgentError(_("This file is not an image we can read."), field="logo") from None
    if fmt not in LOGO_FORMATS:
        raise AgentError(_("Upload a PNG, JPEG or WebP image."), field="logo")
    if width * height > LOGO_MAX_PIXELS or not width or not height:
        raise AgentError(_("This image is too large in pixels."), field="logo")
    img: Image.Image  # opened from a file, then transposed and converted: plain images
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)  # the first frame of an animated image
            img.load()
            img = ImageOps.exif_transpose(img)  # apply the orientation, then drop the metadata
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            img = img.convert("RGBA" if has_alpha else "RGB")
            img.thumbnail(LOGO_SIZE, Image.Resampling.LANCZOS)
            # A fresh image holds pixels only: no EXIF, ICC profile, text chunks or comments.
            clean = Image.new(img.mode, img.size)
            clean.paste(img)
            out = io.BytesIO()
            clean.save(out, format="PNG", optimize=True)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise AgentError(_("This file is not an image we can read."), field="logo") from None
    return out.getvalue()


def storefront_logo_set(*, storefront: Storefront, uploaded_file) -> Storefront:
    """Check an uploaded logo (PNG, JPEG or WebP, at most 1 MB, really an image), fit it in
    256x256, strip its metadata and keep it as PNG."""
    if uploaded_file is None:
        raise AgentError(_("Choose an image to upload."), field="logo")
    size = getattr(uploaded_file, "size", None)
    if size is not None and size > LOGO_MAX_BYTES:
        raise AgentError(_("The logo is at most 1 MB."), field="logo")
    data = uploaded_file.read(LOGO_MAX_BYTES + 1)
    if len(data) > LOGO_MAX_BYTES:
        raise AgentError(_("The logo is at most 1 MB."), field="logo")
    if not data:
        raise AgentError(_("The file is empty."), field="logo")
    png = _logo_png(data)
    now = timezone.now()
    Storefront.objects.filter(pk=storefront.pk).update(logo=png, logo_updated_at=now, updated_at=now)
    storefront.logo, storefront.logo_updated_at = png, now
    return storefront


def storefront_logo_clear(*, storefront: Storefront) -> Storefront:
    now = timezone.now()
    Storefront.objects.filter(pk=storefront.pk).update(logo=None, logo_updated_at=None, updated_at=now)
    storefront.logo, storefront.logo_updated_at = None, None
    return storefront


# --- retail prices and listing ---------------------------------------------------------------


def _cost(storefront: Storefront, product: Product) -> Decimal:
    return agent_costs(agent=storefront.agent, products=[product])[product.pk]


@transaction.atomic
def retail_price_set(*, storefront: Storefront, product: Product, price) -> RetailPrice:
    """The storefront's own price for ``product``: in yuan to the fen, not below the agent's cost."""
    price = _price(price)
    cost = _cost(storefront, product)
    if price < cost:
        raise AgentError(
            _("¥%(price)s is below your cost of ¥%(cost)s for this product: set at least ¥%(cost)s.")
            % {"price": price, "cost": cost},
            field="price",
        )
    rp, _created = RetailPrice.objects.select_for_update().update_or_create(
        storefront=storefront, product=product, defaults={"price": price}
    )
    return rp


@transaction.atomic
def retail_price_clear(*, storefront: Storefront, product: Product) -> None:
    """Back to the default markup. An unlisted product keeps its row (it stays unlisted)."""
    rp = RetailPrice.objects.select_for_update().filter(storefront=storefront, product=product).first()
    if rp is None:
        return
    if not rp.is_listed:
        raise AgentError(_("This product is unlisted: list it again first, then clear its price."))
    rp.delete()


@transaction.atomic
def product_unlist(*, storefront: Storefront, product: Product) -> RetailPrice:
    """Stop selling ``product`` in the storefront (its own price, if any, is kept).

    Without an own price the row records the current default retail price (the model needs
    a price); listing again keeps it as the product's own price.
    """
    rp = RetailPrice.objects.select_for_update().filter(storefront=storefront, product=product).first()
    if rp is None:
        _cost_now, retail = storefront_prices(storefront=storefront, products=[product])[product.pk]
        return RetailPrice.objects.create(storefront=storefront, product=product, price=retail, is_listed=False)
    if rp.is_listed:
        rp.is_listed = False
        rp.save(update_fields=["is_listed", "updated_at"])
    return rp


@transaction.atomic
def product_relist(*, storefront: Storefront, product: Product) -> RetailPrice | None:
    rp = RetailPrice.objects.select_for_update().filter(storefront=storefront, product=product).first()
    if rp is not None and not rp.is_listed:
        rp.is_listed = True
        rp.save(update_fields=["is_listed", "updated_at"])
    return rp


# --- reads ---------------------------------------------------------------------------------------


def storefronts_public():
    """Storefronts buyers may see and buy from: open, and their operator's identity verified
    (网络交易监督管理办法 第二十四条). An identity changed after verification is checked again
    before the shop answers again."""
    return Storefront.objects.filter(is_open=True, agent__operator_identity__status=OperatorIdentity.Status.VERIFIED)


def storefront_for_slug(slug: str) -> Storefront | None:
    """The public storefront at /s/<slug>/, or None (unknown, closed, or its operator unverified)."""
    return storefronts_public().select_related("agent").defer("logo").filter(slug=slug).first()


@dataclass
class PriceRow:
    """One product as its storefront's agent sees it in the dashboard."""

    product: Product
    stock: int
    cost: Decimal
    own_price: Decimal | None  # the storefront's own price, if set
    retail: Decimal  # what a buyer pays now (own or default, lifted to the cost)
    is_listed: bool

    @property
    def margin(self) -> Decimal:
        return self.retail - self.cost

    @property
    def lifted(self) -> bool:
        """The own price is below the cost (the cost rose after it was set): sold at cost."""
        return self.own_price is not None and self.own_price < self.cost

    @property
    def default_retail(self) -> bool:
        return self.own_price is None


def storefront_price_rows(*, storefront: Storefront, products, stock: dict[int, int]) -> list[PriceRow]:
    """Rows for ``products`` (a page, with their category): cost, own price, retail, listing.

    A constant number of queries whatever the number of products and the chain's depth.
    """
    products = list(products)
    own = {
        rp.product_id: rp
        for rp in RetailPrice.objects.filter(storefront=storefront, product_id__in=[p.pk for p in products])
    }
    listed = storefront_prices(storefront=storefront, products=products)
    unlisted = [p for p in products if p.pk not in listed]
    costs = agent_costs(agent=storefront.agent, products=unlisted) if unlisted else {}
    rows = []
    for p in products:
        rp = own.get(p.pk)
        if p.pk in listed:
            cost, retail = listed[p.pk]
        else:
            # storefront_prices leaves out only the products the agent unlisted, which have a price
            # row; one unlisted between the two reads has no row in ``own`` yet: it sells at cost.
            cost = costs[p.pk]
            retail = max(rp.price, cost) if rp is not None else cost
        rows.append(
            PriceRow(
                product=p,
                stock=stock.get(p.pk, 0),
                cost=cost,
                own_price=rp.price if rp is not None else None,
                retail=retail,
                is_listed=rp is None or rp.is_listed,
            )
        )
    return rows
