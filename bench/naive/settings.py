"""notifier's production settings, with the naive API's URLs (deliberately naive: see bench/naive/__init__.py)."""
from notifier_project.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.naive.urls"
# notifier's own middleware reads notifier's URLs (the campaign path's body limit: a NoReverseMatch, so a
# 500 for every POST, under these) and serves its health probes and inbox CORS: Django's stock ones only.
MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("notifier.")]  # noqa: F405
