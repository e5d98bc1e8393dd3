from django.urls import path

from . import views

app_name = "rights"
urlpatterns = [
    path("notices/new/", views.notice_new, name="notice_new"),
    path("notices/filed/", views.notice_filed, name="notice_filed"),
    path("documents/<int:pk>/", views.document, name="document"),
]
