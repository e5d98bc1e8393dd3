"""What a storefront shows of its operator (电子商务法 第十五条; 网络交易监督管理办法 第十二条; issue
14): the "经营者信息" footer block on the shop's home and product pages, the /s/<slug>/operator/
page and the licence image, a business's licence information in full, an individual's masked name,
region and 第十条 statement, and nothing private (ID number, home address, phone) in any HTML."""

import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from agents.models import OperatorIdentity
from agents.selectors import OperatorPublicInfo, address_region, name_masked, storefront_operator_public
from agents.services import agents as agent_services
from agents.services import operators, storefronts
from tests.factories import ProductFactory, UserFactory, add_stock, id_number_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

Kind = OperatorIdentity.Kind
ID_NUMBER = id_number_for(321)
USCC = "91350100M000100Y43"
HOME = "浙江省杭州市西湖区文三路 90 号 5 幢 1203 室"
PHONE = "13800138000"


def licence_upload() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (600, 400), "#f5efe0").save(out, format="PNG")
    return SimpleUploadedFile("licence.png", out.getvalue(), content_type="image/png")


@pytest.fixture
def agent(level):
    return agent_services.agent_create(user=UserFactory(), level=level)


@pytest.fixture
def product():
    p = ProductFactory(slug="steam-100")
    add_stock(p, 2)
    return p


def open_shop(agent, staff, kind):
    if kind == Kind.BUSINESS:
        identity = operators.operator_identity_submit(
            agent=agent,
            kind=Kind.BUSINESS,
            legal_name="王五",
            company_name="杭州示例数码有限公司",
            credit_code=USCC,
            address="浙江省杭州市西湖区文三路 90 号",
            phone="0571-87654321",
            licence_image=licence_upload(),
        )
    else:
        identity = operators.operator_identity_submit(
            agent=agent,
            kind=Kind.INDIVIDUAL,
            legal_name="张小三",
            id_number=ID_NUMBER,
            address=HOME,
            phone=PHONE,
            small_sales_declared=True,
        )
    operators.operator_identity_verify(identity_id=identity.pk, by=staff)
    return storefronts.storefront_open(agent=agent, slug="lucky-star", name="Lucky Star")


def pages(client, product) -> list[str]:
    return [
        client.get(url).content.decode()
        for url in ("/s/lucky-star/", f"/s/lucky-star/p/{product.slug}/", "/s/lucky-star/operator/")
    ]


def test_a_business_shows_its_licence_information_on_every_shop_page(agent, staff, client, product):
    open_shop(agent, staff, Kind.BUSINESS)
    verified_on = timezone.localdate(agent.operator_identity.verified_at).isoformat()
    for html in pages(client, product):
        shown = ("杭州示例数码有限公司", USCC, "王五", "浙江省杭州市西湖区文三路 90 号")
        shown += (f"Verified by the platform {verified_on}",)
        for text in shown:
            assert text in html, text
        assert "/s/lucky-star/operator/licence.jpg" in html or 'data-testid="operator-licence-link"' in html
        assert 'href="/trust/"' in html and 'href="/rights/notices/new/"' in html
        assert "0571-87654321" not in html  # the business's phone is the platform's to know
        assert "Article 10" not in html
    home, product_page, operator_page = pages(client, product)
    assert 'data-testid="shop-operator"' in home and 'data-testid="shop-operator"' in product_page
    assert 'data-testid="operator-licence"' in operator_page


def test_an_individual_shows_a_masked_name_the_statement_and_the_city_only(agent, staff, client, product):
    open_shop(agent, staff, Kind.INDIVIDUAL)
    for html in pages(client, product):
        assert "张**" in html
        assert "Under Article 10 of the E-Commerce Law, no market entity registration is required" in html
        assert "浙江省杭州市" in html
        # Nothing private: not the name, the ID number (nor its masked form), the home address, the phone.
        for private in ("张小三", "小三", ID_NUMBER, ID_NUMBER[-6:], "西湖区", "文三路", "1203", PHONE, PHONE[-4:]):
            assert private not in html, private
        assert "licence.jpg" not in html
    assert client.get("/s/lucky-star/operator/licence.jpg").status_code == 404


def test_the_statement_is_translated(agent, staff, client, product, settings):
    open_shop(agent, staff, Kind.INDIVIDUAL)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    html = client.get("/s/lucky-star/", headers={"accept-language": "zh-hans"}).content.decode()
    assert "经营者信息" in html
    assert "依照《电子商务法》第十条 无需办理市场主体登记（零星小额交易）" in html
    assert "平台已核验" in html


def test_the_selector_returns_public_fields_only(agent, staff):
    shop = open_shop(agent, staff, Kind.INDIVIDUAL)
    info = storefront_operator_public(storefront=shop)
    assert isinstance(info, OperatorPublicInfo)
    assert info.name == "张**" and info.address == "浙江省杭州市" and not info.is_business
    values = " ".join(str(v) for v in vars(info).values())
    assert ID_NUMBER not in values and PHONE not in values and "文三路" not in values
    assert not hasattr(info, "id_number") and not hasattr(info, "phone")


@pytest.mark.parametrize(
    ("address", "region"),
    [
        ("北京市东城区东长安街 1 号", "北京市"),
        ("浙江省杭州市西湖区文三路 90 号", "浙江省杭州市"),
        ("广西壮族自治区南宁市青秀区民族大道 1 号", "广西壮族自治区南宁市"),
        ("湖北省恩施土家族苗族自治州恩施市舞阳大街 2 号", "湖北省恩施土家族苗族自治州"),
        ("文三路 90 号", ""),  # no province or city named: nothing is published
        ("", ""),
    ],
)
def test_the_region_stops_at_the_city(address, region):
    assert address_region(address) == region


def test_the_name_is_masked_to_the_surname_whatever_its_length():
    assert name_masked("张三") == name_masked("张小三") == "张**"
    assert name_masked("") == ""


@pytest.mark.parametrize("kind", [Kind.BUSINESS, Kind.INDIVIDUAL])
def test_pages_404_when_the_shop_is_not_public(agent, staff, client, product, kind):
    shop = open_shop(agent, staff, kind)
    assert client.get("/s/lucky-star/operator/").status_code == 200
    storefronts.storefront_close(storefront=shop)
    for url in ("/s/lucky-star/operator/", "/s/lucky-star/operator/licence.jpg", "/s/lucky-star/"):
        assert client.get(url).status_code == 404, url
    assert client.get("/s/nowhere/operator/").status_code == 404


def test_the_licence_image_is_served_only_while_the_shop_is_public(agent, staff, client):
    shop = open_shop(agent, staff, Kind.BUSINESS)
    response = client.get("/s/lucky-star/operator/licence.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"
    assert "no-cache" in response["Cache-Control"] and "public" not in response["Cache-Control"]
    assert response["Content-Security-Policy"] == "default-src 'none'"
    again = client.get("/s/lucky-star/operator/licence.jpg", headers={"if-none-match": response["ETag"]})
    assert again.status_code == 304

    # A change to the identity puts it back before staff: the shop and its licence stop answering.
    operators.operator_identity_submit(
        agent=agent,
        kind=Kind.BUSINESS,
        legal_name="王五",
        company_name="杭州示例数码有限公司",
        credit_code=USCC,
        address="浙江省杭州市滨江区网商路 1 号",
        phone="0571-87654321",
    )
    assert client.get("/s/lucky-star/operator/licence.jpg").status_code == 404
    operators.operator_identity_verify(identity_id=agent.operator_identity.pk, by=staff)
    assert client.get("/s/lucky-star/operator/licence.jpg").status_code == 200

    storefronts.storefront_close(storefront=shop)
    assert client.get("/s/lucky-star/operator/licence.jpg").status_code == 404


def test_the_verification_date_is_the_identitys(agent, staff, client, product):
    open_shop(agent, staff, Kind.BUSINESS)
    when = timezone.now() - timedelta(days=40)
    OperatorIdentity.objects.filter(agent=agent).update(verified_at=when)
    html = client.get("/s/lucky-star/").content.decode()
    assert f"Verified by the platform {timezone.localdate(when).isoformat()}" in html


def test_the_footer_block_reads_in_one_query(agent, staff, django_assert_num_queries):
    shop = open_shop(agent, staff, Kind.BUSINESS)
    with django_assert_num_queries(1):
        info = storefront_operator_public(storefront=shop)
    assert info is not None and info.has_licence
