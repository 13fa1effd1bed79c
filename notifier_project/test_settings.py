"""Settings for the test suite: the same as production, but on PostgreSQL even when DATABASE_URL is unset,
because the tests are about the real database (row locks, SKIP LOCKED, concurrency)."""
import os
import secrets

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifier")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# DEBUG stays off, as in production, so the suite needs a key: one per run, shared with the processes the
# end-to-end tests start (they inherit this environment).
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Static files are collected only by `make run`; without them WhiteNoise warns on every request.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405
