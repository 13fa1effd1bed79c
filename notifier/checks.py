"""`manage.py check` warns about provider settings that would make deliveries fail."""
from django.conf import settings
from django.core.checks import Warning, register

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
