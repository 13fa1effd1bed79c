from django.apps import AppConfig


class NotifierConfig(AppConfig):
    name = "notifier"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from celery.signals import worker_process_shutdown

        from notifier import checks  # noqa: F401  (registers the system checks)
        from notifier import inbox  # noqa: F401  (a deleted recipient's cached inbox is dropped)
        from notifier import metrics
        from notifier import producer_webhooks  # noqa: F401  (registers its status observer)
        from notifier.api import schema  # noqa: F401  (registers the OpenAPI description of our auth)
        from notifier.pipeline import status

        if metrics.status_changes_count not in status.OBSERVERS:
            status.OBSERVERS.append(metrics.status_changes_count)
        # A prefork child exiting: prometheus-client drops its live gauges. weak=False: the receiver is a
        # plain function kept by the signal.
        worker_process_shutdown.connect(_metrics_process_exited, weak=False, dispatch_uid="notifier.metrics")


def _metrics_process_exited(pid=None, **kwargs):
    import os

    from notifier.metrics import process_exited

    process_exited(pid or os.getpid())
