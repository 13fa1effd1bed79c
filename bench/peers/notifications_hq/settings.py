"""The peer's Django project: startproject's apps and middleware plus `notifications`, production-like
(DEBUG off, persistent connections as notifier's settings keep them), on the database in DATABASE_URL."""
import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])

SECRET_KEY = "bench-peer-notifications-hq"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "notifications",
]
MIDDLEWARE = [  # what `django-admin startproject` ships (notifier runs the same stack plus whitenoise)
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "bench.peers.notifications_hq.urls"
WSGI_APPLICATION = "bench.peers.notifications_hq.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "",
        "PORT": _url.port or "",
        "CONN_MAX_AGE": int(os.environ.get("DB_CONN_MAX_AGE", "60")),  # as notifier_project/settings.py
    }
}
# The library's defaults (no soft delete: unread() filters on `unread` alone).
DJANGO_NOTIFICATIONS_CONFIG = {"SOFT_DELETE": False}
