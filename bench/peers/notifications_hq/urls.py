from django.urls import path

from bench.peers.notifications_hq.views import inbox

urlpatterns = [path("inbox/<str:username>", inbox)]
