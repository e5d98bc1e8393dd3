"""Risk control's one public address: the captcha's challenges (risk/captcha.py)."""

from django.urls import path

from . import captcha

app_name = "risk"
urlpatterns = [path("captcha/challenge/", captcha.challenge_view, name="captcha_challenge")]
