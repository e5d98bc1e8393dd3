from django.urls import path

from .views import accounts, arbitration, guest, refunds, tickets

app_name = "aftersales"
urlpatterns = [
    path("", tickets.ticket_list, name="tickets"),
    path("new/", tickets.ticket_new, name="ticket_new"),
    # The 7-day no-reason refund pages.
    path("refunds/order/<str:number>/", refunds.refund_new, name="refund_new"),
    path("refunds/<uuid:public_id>/", refunds.refund_detail, name="refund_detail"),
    path("attachments/<uuid:public_id>/", tickets.attachment, name="attachment"),
    path("<str:number>/", tickets.ticket_detail, name="ticket"),
    path("<str:number>/reopen/", tickets.ticket_reopen, name="ticket_reopen"),
    path("<str:number>/close/", tickets.ticket_close, name="ticket_close"),
    # The buyer's arbitration page of a ticket.
    path("<str:number>/arbitration/", arbitration.arbitration_detail, name="arbitration"),
    # The same page under the name the dispute rejection's message links to.
    path("<str:number>/arbitration/", arbitration.arbitration_detail, name="arbitration_new"),
]

# A guest order's after-sales, under the guest's order page: mounted at
# /orders/guest/<number>/ (marketplace.urls), each view checks the guest's proof.
guest_urlpatterns = [
    path("refund/", guest.refund_new, name="refund_new"),
    path("refunds/<uuid:public_id>/", guest.refund_detail, name="refund_detail"),
    path("tickets/new/", guest.ticket_new, name="ticket_new"),
    path("tickets/<str:ticket>/", guest.ticket_detail, name="ticket"),
    path("tickets/<str:ticket>/reopen/", guest.ticket_reopen, name="ticket_reopen"),
    path("tickets/<str:ticket>/close/", guest.ticket_close, name="ticket_close"),
    path("tickets/<str:ticket>/arbitration/", guest.arbitration, name="arbitration"),
    path("attachments/<uuid:public_id>/", guest.attachment, name="attachment"),
]

# Closing one's own account (mounted at /accounts/close/ by marketplace.urls).
account_urlpatterns = [path("", accounts.close, name="close")]
