from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from orders.models import Order


@login_required
def profile(request):
    counts = Order.objects.filter(buyer=request.user).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=Order.Status.DELIVERED)),
        pending=Count("id", filter=Q(status=Order.Status.PENDING)),
    )
    return render(request, "accounts/profile.html", {"counts": counts})


@never_cache
def health(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
