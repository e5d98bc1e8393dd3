from django.urls import include, path

from . import views

app_name = "aftersales"
urlpatterns = [
    path("", views.ticket_list, name="tickets"),
    path("new/", views.ticket_new, name="ticket_new"),
    path("refunds/", include("aftersales.urls_refunds")),
    path("attachments/<uuid:public_id>/", views.attachment, name="attachment"),
    path("<str:number>/", views.ticket_detail, name="ticket"),
    path("<str:number>/reopen/", views.ticket_reopen, name="ticket_reopen"),
    path("<str:number>/close/", views.ticket_close, name="ticket_close"),
    path("<str:number>/arbitration/", include("aftersales.urls_arbitration")),
]
