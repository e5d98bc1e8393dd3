"""Demo data: the platform's qualifications (a fictional company), so the demo's footer and
qualifications page are not empty. Safe to run again: a kind already recorded is kept.

The numbers are made up (the unified social credit code passes its GB 32100-2015 check, as the
admin requires); the licence image is drawn here and marked as demo data.
"""

import io
from datetime import date, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from PIL import Image, ImageDraw, ImageFont

from compliance import services
from compliance.models import Qualification

COMPANY = "杭州卡盟数字科技有限公司"
SCOPE = (
    "一般项目：技术服务、技术开发、技术咨询；软件开发；数字内容制作服务；"
    "互联网销售（除销售需要许可的商品）。许可项目：第二类增值电信业务。"
)
QUALIFICATIONS = [
    {
        "kind": Qualification.Kind.BUSINESS_LICENCE,
        "number": "91330106MA2H3K7Q0C",
        "company_name": COMPANY,
        "scope": SCOPE,
        "valid_from": date(2021, 3, 18),
        "valid_until": None,
    },
    {"kind": Qualification.Kind.ICP_FILING, "number": "浙ICP备2021036521号-1", "company_name": COMPANY},
    {
        "kind": Qualification.Kind.TELECOM_LICENCE,
        "number": "浙B2-20210452",
        "company_name": COMPANY,
        "scope": "第二类增值电信业务中的在线数据处理与交易处理业务、信息服务业务（仅限互联网信息服务）",
        # Issued about two years before the demo is loaded, for five years: valid, not yet due.
        "valid_from": None,
        "valid_until": None,
    },
    {
        "kind": Qualification.Kind.PUBLIC_SECURITY_FILING,
        "number": "浙公网安备33010602011876号",
        "company_name": COMPANY,
    },
]
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def _font(size: int):
    if CJK_FONT.exists():
        return ImageFont.truetype(str(CJK_FONT), size)
    return ImageFont.load_default(size)


def licence_image(values: dict) -> bytes:
    """A drawn licence (no real document's likeness), plainly marked as demo data."""
    cjk = CJK_FONT.exists()
    img = Image.new("RGB", (1200, 850), "#fbf7ee")
    draw = ImageDraw.Draw(img)
    draw.rectangle((24, 24, 1176, 826), outline="#b5651d", width=8)
    draw.rectangle((44, 44, 1156, 806), outline="#b5651d", width=2)
    title = "营 业 执 照" if cjk else "BUSINESS LICENCE"
    draw.text((600, 120), title, fill="#8b1a1a", font=_font(72), anchor="mm")
    lines = (
        [
            ("统一社会信用代码", values["number"]),
            ("名称", values["company_name"]),
            ("类型", "有限责任公司"),
            ("成立日期", values["valid_from"].strftime("%Y年%m月%d日")),
            ("营业期限", "长期"),
        ]
        if cjk
        else [("USCC", values["number"]), ("Since", values["valid_from"].isoformat())]
    )
    y = 250
    for label, value in lines:
        draw.text((120, y), label, fill="#333", font=_font(34))
        draw.text((440, y), value, fill="#111", font=_font(34))
        y += 80
    mark = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(mark).text(
        (600, 560), "演示数据 · DEMO" if cjk else "DEMO", fill=(200, 0, 0, 70), font=_font(110), anchor="mm"
    )
    img.paste(mark.rotate(18, center=(600, 560)), mask=mark.rotate(18, center=(600, 560)))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return services.qualification_image_encode(data=out.getvalue())


class Command(BaseCommand):
    help = "Record demo qualifications (a fictional company) so the footer and qualifications page show them."

    @transaction.atomic
    def handle(self, *args, **options):
        made = 0
        for values in QUALIFICATIONS:
            if Qualification.objects.filter(kind=values["kind"]).exists():
                continue
            fields = {name: values.get(name) for name in services.QUALIFICATION_FIELDS}
            fields["is_shown"] = True
            if values["kind"] == Qualification.Kind.TELECOM_LICENCE:
                issued = timezone.localdate() - timedelta(days=2 * 365 + 40)
                fields["valid_from"], fields["valid_until"] = (
                    issued,
                    issued.replace(year=issued.year + 5) - timedelta(days=1),
                )
            image = licence_image(values) if values["kind"] == Qualification.Kind.BUSINESS_LICENCE else services.KEEP
            services.qualification_save(actor=None, qualification_id=None, values=fields, image=image)
            made += 1
        if options["verbosity"]:
            self.stdout.write(f"{made} demo qualification(s) recorded.")
