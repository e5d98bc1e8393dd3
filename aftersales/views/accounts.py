"""The account holder closes their own account (/accounts/close/, linked from the profile page),
with their password as confirmation. ``aftersales.services.accounts.account_close``."""

from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache

from marketplace.errors import ServiceError

from ..services.accounts import account_close, account_close_blockers


class CloseForm(forms.Form):
    password = forms.CharField(label=gettext_lazy("Your password"), strip=False, widget=forms.PasswordInput)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("The password is not correct."))
        return password


@never_cache
@login_required
def close(request):
    form = CloseForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            account_close(user=request.user, by=request.user, request=request)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            logout(request)
            messages.success(request, _("Your account is closed. Your personal data has been removed."))
            return redirect("catalog:home")
    return render(
        request,
        "accounts/close.html",
        {"form": form, "blockers": account_close_blockers(user=request.user)},
        status=400 if form.errors else 200,
    )
