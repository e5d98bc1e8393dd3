"""Payments' URLs, three lists for three places (``marketplace/urls.py`` mounts them).

``urlpatterns``: paying an order or a recharge, at /pay/ (namespace ``payments``).
``wallet_urlpatterns``: the buyer's wallet at /wallet/ (namespace ``wallet``).
``callback_urlpatterns``: gateways' notifications at /payments/ (no namespace, no language
prefix, no session, no CSRF: they are verified by signature).
"""

from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("qr/<str:token>.svg", views.qr_image, name="qr"),
    path("<str:number>/", views.choose, name="choose"),
    path("<str:number>/start/<slug:gateway>/", views.start, name="start"),
    path("<str:number>/balance/", views.pay_with_balance, name="balance"),
    path("<str:number>/status/", views.payable_status, name="status"),
    path("sandbox/<str:number>/", views.sandbox_cashier, name="sandbox"),
]

wallet_urlpatterns = [
    path("", views.wallet, name="home"),
    path("transactions.csv", views.wallet_export, name="export"),
]

callback_urlpatterns = [
    path("notify/<slug:gateway>/", views.notify, name="payments-notify"),
    # Refund results have their own address (WeChat Pay sends them where the refund asked);
    # the same verification and dispatch by event type apply.
    path("notify/<slug:gateway>/refund/", views.notify, name="payments-notify-refund"),
]
