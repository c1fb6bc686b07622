from django.urls import path

from . import views

urlpatterns = [
    path("", views.directory),
    path("api/members/<str:handle>", views.member),
    path("api/users", views.users),
]
