from django.urls import path

from . import views

urlpatterns = [
    path("notify/<slug:gateway>/", views.notify, name="payments-notify"),
    # Refund results have their own address (WeChat Pay sends them where the refund asked);
    # the same verification and dispatch by event type apply.
    path("notify/<slug:gateway>/refund/", views.notify, name="payments-notify-refund"),
]
