from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView
from django.views.i18n import set_language

from accounts import views as account_views
from aftersales import urls as aftersales_urls
from agents import urls as agent_urls
from marketing import urls as marketing_urls
from orders import urls as order_urls
from orders.views import orders as order_views
from payments import urls as payment_urls

admin.site.site_header = _("卡盟 · Operations")
admin.site.site_title = _("卡盟 operations")
admin.site.index_title = _("Operations")
# One password door: the admin's login form is replaced by the site's (allauth), so the login
# locks (accounts.services) cover staff too. Signed-in staff pass; others get a 403.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    # The load balancer's /health/ and Prometheus' /metrics (issue 17): no session, no language.
    path("", include("ops.urls")),
    path("i18n/setlang/", set_language, name="set_language"),
    # Gateways post here: no language prefix, no session, no CSRF (they are verified by signature).
    path("payments/", include(payment_urls.callback_urlpatterns)),
    # Suppliers' callbacks about our supplier orders: verified by signature, no session, no CSRF.
    path("supply/", include((order_urls.supply_urlpatterns, "supply"))),
    # The agents' integration API: signed requests, no session, no CSRF.
    path("api/", include("api.urls")),
    path("admin/", admin.site.urls),
    path("accounts/profile/", order_views.profile, name="profile"),
    path("accounts/realname/", include("compliance.account_urls")),  # real-name verification
    path("accounts/close/", include((aftersales_urls.account_urlpatterns, "account_close"))),
    path("accounts/", include("allauth.urls")),
    # A guest order's after-sales pages, under its order page (the guest's proof is checked there).
    path("orders/guest/<str:number>/", include((aftersales_urls.guest_urlpatterns, "aftersales_guest"))),
    path("orders/", include("orders.urls")),
    path("pay/", include("payments.urls")),
    path("wallet/", include((payment_urls.wallet_urlpatterns, "wallet"))),
    # The agent centre: its own pages, and those that read sales (they live in orders).
    path(
        "agent/",
        include(
            (
                order_urls.agent_urlpatterns + marketing_urls.agent_urlpatterns + agent_urls.urlpatterns,
                agent_urls.app_name,
            )
        ),
    ),
    path("support/", include("aftersales.urls")),
    path("s/", include((order_urls.storefront_urlpatterns, "storefront"))),
    # The trust pages: the trust centre (every claim checkable, trust.views) and the platform's
    # qualifications (电子商务法 第十五条, compliance.views).
    path("trust/", include("trust.urls")),
    path("trust/", include("compliance.urls")),
    path("risk/", include("risk.urls")),  # the captcha's challenges
    # Rights holders' notices (电子商务法 第四十二条) and the ledger's private documents (staff).
    path("rights/", include("rights.urls")),
    # The agreements and policies, their versions, and the page to accept new ones (legal).
    path("legal/", include("legal.urls")),
    # A member's invitation link /r/<code>/ and their invitation pages (referrals: one level only).
    path("", include("referrals.urls")),
    path("", include((order_urls.catalog_urlpatterns, "catalog"))),
]

urlpatterns += [path("healthz", account_views.health, name="health")]
# Browsers and feed readers ask for /favicon.ico whatever the page links.
urlpatterns += [path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}img/favicon.ico"))]

# allauth past one of its limits (ACCOUNT_RATE_LIMITS) renders this: the site's 429 page, with
# Retry-After (allauth.core.internal.ratelimit.respond_429 looks it up here).
handler429 = "marketplace.ratelimit.allauth_429"
