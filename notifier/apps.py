from django.apps import AppConfig


class NotifierConfig(AppConfig):
    name = "notifier"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from notifier import checks  # noqa: F401  (registers the system checks)
        from notifier.api import schema  # noqa: F401  (registers the OpenAPI description of our auth)
        from notifier import producer_webhooks  # noqa: F401  (registers its status observer)
