"""`manage.py check` warns about settings that would make deliveries fail or go out twice."""
from django.conf import settings
from django.core.checks import Warning, register

import celeryconfig

from notifier.providers.registry import provider_get, providers_reset


@register()
def provider_settings(app_configs, **kwargs):
    warnings = []
    for channel, names in settings.NOTIFIER_CHANNEL_PROVIDERS.items():
        for name in names:
            try:
                problems = provider_get(name, channel).check()
            except Exception as error:
                problems = [f"cannot be set up: {error}"]
            warnings += [
                Warning(f"{channel} provider '{name}': {problem}", hint="See README, 'Providers'.", id="notifier.W001")
                for problem in problems
            ]
    providers_reset()  # built only to check them; workers build their own
    return warnings


@register()
def claim_lease_outlasts_tasks(app_configs, **kwargs):
    if settings.NOTIFIER_CLAIM_LEASE_SECONDS > celeryconfig.task_time_limit:
        return []
    return [Warning(
        f"NOTIFIER_CLAIM_LEASE_SECONDS ({settings.NOTIFIER_CLAIM_LEASE_SECONDS}) does not outlast a task's hard "
        f"time limit ({celeryconfig.task_time_limit} s): the sweeper may hand a batch still being sent to "
        "another worker, and its messages would go out twice.",
        hint="Raise NOTIFIER_CLAIM_LEASE_SECONDS above the time limit.", id="notifier.W002",
    )]
