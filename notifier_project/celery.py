"""The Celery app. Every Celery setting lives in the top-level celeryconfig.py."""
import logging
import os

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifier_project.settings")

app = Celery("notifier")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["notifier"])

log = logging.getLogger(__name__)


@worker_process_shutdown.connect  # a prefork child exiting (it built the providers it used)
@worker_shutdown.connect  # the worker itself: with -P solo or threads the providers live there
def close_providers(**kwargs):
    """Close provider connections (APNs' HTTP/2 pool, FCM's client, Twilio's session) at shutdown, so the
    servers see a clean close rather than a dropped socket."""
    from notifier.providers.registry import providers_reset

    closed = providers_reset()
    if closed:
        log.info("notifier: closed %s provider(s) at shutdown of process %s", closed, os.getpid())
