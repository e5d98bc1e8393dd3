from django.conf import settings


def site(request):
    return {"SITE_NAME": "卡盟", "SANDBOX_ENABLED": settings.PAYMENTS_SANDBOX_ENABLED}
