from django.urls import path

from . import views

app_name = "referrals"

# Mounted at the root: the short link on posters, and the inviter's pages in the account area.
urlpatterns = [
    path("r/<str:code>/", views.landing, name="landing"),
    path("accounts/invite/", views.invite, name="invite"),
    path("accounts/invite/poster/", views.poster, name="poster"),
    path("accounts/invite/poster.svg", views.poster_svg, name="poster_svg"),
]
