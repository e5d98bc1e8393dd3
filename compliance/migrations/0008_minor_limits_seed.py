"""The national limits on minors' game top-ups (国家新闻出版署《关于防止未成年人沉迷网络游戏的通知》,
国新出发〔2019〕34号, 第三条), as the first rows staff may edit in admin."""

from decimal import Decimal

from django.db import migrations

NATIONAL = [
    # (from age, under age, allowed, per payment, per month)
    (0, 8, False, None, None),  # 不得为未满8周岁的用户提供游戏付费服务
    (8, 16, True, Decimal("50.00"), Decimal("200.00")),  # 单次不得超过50元, 每月累计不得超过200元
    (16, 18, True, Decimal("100.00"), Decimal("400.00")),  # 单次不得超过100元, 每月累计不得超过400元
]


def seed(apps, schema_editor):
    MinorLimit = apps.get_model("compliance", "MinorLimit")
    if MinorLimit.objects.exists():
        return
    for age_from, age_to, allowed, per_payment, per_month in NATIONAL:
        MinorLimit.objects.create(
            age_from=age_from, age_to=age_to, allowed=allowed, per_payment=per_payment, per_month=per_month
        )


class Migration(migrations.Migration):
    dependencies = [("compliance", "0007_realname_minors")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
