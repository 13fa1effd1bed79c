"""notifier's production settings, with the naive API's URLs (deliberately naive: see bench/naive/__init__.py)."""
from notifier_project.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.naive.urls"
