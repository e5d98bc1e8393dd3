from django.urls import path

from . import views

app_name = "rights"
urlpatterns = [
    path("notices/", views.notice_list, name="notice_list"),
    path("notices/new/", views.notice_new, name="notice_new"),
    path("notices/filed/", views.notice_filed, name="notice_filed"),
    # After new/ and filed/: a reference is RN + 14 characters, never one of those words.
    path("notices/<str:number>/", views.notice_detail, name="notice_detail"),
    path("documents/<int:pk>/", views.document, name="document"),
]
