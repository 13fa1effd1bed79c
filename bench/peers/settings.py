"""A minimal Django project for the peers, on the bench database (their own tables beside notifier's)."""
import os

import dj_database_url

SECRET_KEY = "bench-peers"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "push_notifications"]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
# FCM through firebase-admin's default app (bench/peers/push_send.py points it at the fake FCM).
# FCM_MAX_RECIPIENTS must be lowered from its default of 1,000: send_each refuses more than 500 messages.
PUSH_NOTIFICATIONS_SETTINGS = {"FIREBASE_APP": None, "FCM_MAX_RECIPIENTS": 500}
