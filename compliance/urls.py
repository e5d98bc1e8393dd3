from django.urls import path

from . import views

app_name = "compliance"
urlpatterns = [
    path("qualifications/", views.qualifications, name="qualifications"),
    path("qualifications/<int:pk>/image/", views.qualification_image, name="qualification_image"),
]
