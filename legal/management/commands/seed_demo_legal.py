# ruff: noqa: E501  (the demo texts are Chinese paragraphs, one line each)
"""Demo data: the four agreements (templates for the operator to rewrite with counsel), and every
demo account counted as having accepted them, so `dev.py up` blocks nobody. A second version of
the user agreement is published to take effect in ten days, so the site's notice shows
(电子商务法 第三十四条). Safe to run again: a version already there is kept."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from legal import selectors, services
from legal.models import AgreementDocument, AgreementVersion

TEMPLATE_NOTE = "【模板】本文本为演示用模板，运营方须结合自身业务并经法律顾问审阅后修改发布，不构成法律意见。"

USER = """欢迎使用本平台。本《用户协议》是您与平台运营方之间就使用本平台服务所订立的协议。您注册账号、下单购买或以其他方式使用本平台服务，即表示您已阅读、理解并同意本协议全部条款。

一、服务内容。本平台提供游戏点卡、软件授权码、会员卡等数字商品的展示、交易撮合与交付服务。商品以卡密形式交付，卡密仅在订单页面展示，平台记录每一次查看。

二、账号与安全。您应使用真实有效的电子邮箱注册，妥善保管账号密码及二次验证设备。因您保管不善造成的损失由您自行承担；发现账号被盗用，请立即联系客服。

三、交易规则。商品价格以下单时页面显示为准，订单须在规定时间内完成支付，逾期自动关闭。请通过平台列明的官方支付渠道付款，平台不会要求您向个人账户转账。

四、售后与争议。未查看的卡密可依据《退款政策》申请退款；其他问题请通过工单提交，平台将在承诺时限内答复。双方协商不成的，可向平台所在地有管辖权的人民法院提起诉讼。

五、协议修改。平台修改本协议的，将在首页显著位置公示，并至少在实行前七日予以公示（《中华人民共和国电子商务法》第三十四条）。新版本生效后您继续使用服务，需重新确认同意。"""

USER_V2_EXTRA = """

六、未成年人保护。未满十八周岁的用户应在监护人同意和指导下使用本平台；游戏充值类商品按照国家有关防止未成年人沉迷网络游戏的规定限制向未成年人销售。"""

REFUND = """本《退款政策》说明您在本平台购买数字商品后可申请退款的情形与流程。

一、七日无理由退款。自订单交付之日起七日内，卡密从未被查看（平台查看记录可证明未使用）的，您可申请无理由退款，款项原路退回。

二、商品问题退款。卡密无效、已被使用或与描述不符的，请在工单中提交订单号及截图，经核实后平台将补发或退款。

三、不予退款的情形。卡密已被查看且无质量问题的，因数字商品的特殊性，不适用无理由退款（《中华人民共和国消费者权益保护法》第二十五条）。

四、退款时限。退款审核通过后，款项一般在一至七个工作日内退回原支付账户，具体以支付机构处理时间为准。"""

PRIVACY = """本《隐私政策》说明本平台如何收集、使用、存储和保护您的个人信息。我们依照《中华人民共和国个人信息保护法》处理您的个人信息。

一、我们收集的信息。注册时的电子邮箱；下单时的订单信息、IP 地址与设备标识（用于风险控制）；按规定需实名的商品所需的身份信息（加密存储）。

二、信息的使用。用于提供和交付商品、发送订单通知、处理售后、防范欺诈，以及履行法律法规规定的义务。我们不会出售您的个人信息。

三、信息的保存。交易信息自交易完成之日起保存不少于三年（《中华人民共和国电子商务法》第三十一条）。您注销账号后，我们将删除或匿名化您的个人信息，但依法须保存的交易记录将在匿名化后继续保存。

四、您的权利。您可以在账户设置中查阅、更正您的信息，或注销账号；如有疑问，请通过客服工单联系我们。"""

AGENT = """本《代理协议》适用于在本平台开通代理资格、经营店铺或通过接口对接销售的代理商。

一、代理资格。代理商应如实提交主体信息，遵守平台规则及国家法律法规，不得销售未经授权的商品。

二、价格与结算。代理商按其等级对应的价格进货，零售价由代理商在平台允许范围内自行设定；佣金在退款期届满后转为可提现余额。

三、接口使用。代理商通过平台接口下单的，视为代理商本人的交易行为，由代理商对其终端客户负责，并妥善保管接口密钥。代理商接受本协议即覆盖其通过接口提交的全部订单。

四、违约处理。代理商违反本协议或平台规则的，平台有权暂停其代理资格、冻结相关佣金，并依法追究责任。"""

DOCS = [
    (AgreementDocument.USER, "用户协议", USER),
    (AgreementDocument.REFUND, "退款政策", REFUND),
    (AgreementDocument.PRIVACY, "隐私政策", PRIVACY),
    (AgreementDocument.AGENT, "代理协议", AGENT),
]


class Command(BaseCommand):
    help = "Load demo agreements (templates) and count demo accounts as having accepted them."

    @transaction.atomic
    def handle(self, *args, **options):
        now = timezone.now()
        made = 0
        for kind, title, body in DOCS:
            if not AgreementVersion.objects.filter(kind=kind).exists():
                draft = services.agreement_version_create(
                    kind=kind, version="2026.1", title=title, body=f"{TEMPLATE_NOTE}\n\n{body}", effective_at=now
                )
                services.agreement_version_publish(version=draft, now=now)
                made += 1
        if not AgreementVersion.objects.filter(kind=AgreementDocument.USER, version="2026.2").exists():
            draft = services.agreement_version_create(
                kind=AgreementDocument.USER,
                version="2026.2",
                title="用户协议",
                body=f"{TEMPLATE_NOTE}\n\n{USER}{USER_V2_EXTRA}",
                effective_at=now + timedelta(days=10),
            )
            services.agreement_version_publish(version=draft, now=now)
            made += 1
        selectors.published_forget()
        accepted = 0
        for user in get_user_model().objects.filter(is_active=True).order_by("pk"):
            versions = selectors.required_for(kinds=selectors.kinds_for_user(user))
            accepted += len(services.agreements_accept(versions=versions, user=user))
        self.stdout.write(f"agreements: {made} version(s) published, {accepted} demo acceptance(s) recorded")
