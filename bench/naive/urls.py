from django.urls import path

from . import views

urlpatterns = [path("api/v1/notifications", views.notifications_send)]
