from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("email", "username", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "username", "phone")
    ordering = ("-date_joined",)
    fieldsets = (*BaseUserAdmin.fieldsets, ("联系方式", {"fields": ("phone",)}))
