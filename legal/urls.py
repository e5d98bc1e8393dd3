from django.urls import path

from . import views

app_name = "legal"
urlpatterns = [
    path("", views.index, name="index"),
    path("accept/", views.accept, name="accept"),
    path("<slug:kind>/", views.document, name="document"),
    path("<slug:kind>/<str:version>/", views.version_detail, name="version"),
]
