"""The staff directory: a page and two small JSON endpoints over the fixture data."""

from django.contrib.auth import get_user_model
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.utils.html import escape

from .models import Member


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain")


def directory(request):
    rows = "".join(
        f"<li>{escape(m.handle)} ({escape(m.team)}) &lt;{escape(m.email)}&gt;</li>" for m in Member.objects.all()[:20]
    )
    body = f"<!doctype html><title>Staff</title><h1>Staff directory</h1><p>{Member.objects.count()} members</p><ul>{rows}</ul>"
    return HttpResponse(body)


def member(request, handle):
    m = Member.objects.filter(handle=handle).first()
    if m is None:
        return JsonResponse({"error": f"no member {handle}"}, status=404)
    return JsonResponse({"handle": m.handle, "team": m.team, "joined": m.joined.isoformat()})


def users(request):
    users = get_user_model().objects.order_by("id")
    return JsonResponse({"count": users.count(), "emails": [u.email for u in users]})
