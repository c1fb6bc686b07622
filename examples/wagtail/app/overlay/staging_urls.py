"""URLs of the staging stack: a health endpoint and the staff directory, then the starter
project's own URLs (Wagtail's page serving last)."""

from django.urls import include, path

from mysite.urls import urlpatterns as site_urlpatterns
from staff import views

urlpatterns = [
    path("healthz", views.healthz),
    path("staff/", include("staff.urls")),
] + site_urlpatterns
