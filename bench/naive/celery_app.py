"""The naive design's own Celery app: one queue, one task per recipient per channel (deliberately naive)."""
import os

import django
from celery import Celery

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.naive.settings"
django.setup()

app = Celery("naive", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9"))
app.conf.update(task_default_queue="naive", task_ignore_result=True, worker_prefetch_multiplier=4,
                task_serializer="json", accept_content=["json"])
app.autodiscover_tasks(["bench.naive"], related_name="tasks", force=True)
import bench.naive.tasks  # noqa: E402,F401  (registers the task)
