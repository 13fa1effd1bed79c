"""`manage.py check` warns about settings that would make deliveries fail or go out twice, and
`check --deploy` about what a production deployment must set."""
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


@register()
def sendgrid_webhook_key(app_configs, **kwargs):
    """A SENDGRID_WEBHOOK_PUBLIC_KEY that cannot be read refuses every event post: say so at start, not at
    the first bounce."""
    public_key = settings.NOTIFIER_PROVIDER_CONFIG.get("sendgrid", {}).get("webhook_public_key", "")
    if not public_key:
        return []
    from notifier.webhooks.sendgrid import webhook_public_key_load

    try:
        webhook_public_key_load(public_key)
    except ValueError as error:
        return [Warning(f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key ({error}): every SendGrid event post "
                        "will be refused.",
                        hint="Copy the Verification Key of SendGrid's Signed Event Webhook. See README, "
                             "\"SendGrid's Event Webhook\".", id="notifier.W006")]
    return []


@register(deploy=True)
def production_settings(app_configs, **kwargs):
    """`manage.py check --deploy`: what a production deployment must set beyond Django's own HTTPS
    settings (README, 'Production'). SECRET_KEY needs no check: with DEBUG off, settings.py refuses to start
    without one."""
    problems = []
    if "*" in settings.ALLOWED_HOSTS:
        problems.append(("ALLOWED_HOSTS is '*', so any Host header is accepted (and used in absolute URLs).",
                         "Set ALLOWED_HOSTS to the host names the API is served at.", "notifier.W003"))
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(("DATABASE_URL is not set: the database is SQLite in var/, one writer at a time on one machine.",
                         "Set DATABASE_URL to a PostgreSQL database.", "notifier.W004"))
    if not settings.NOTIFIER_PUBLIC_URL.startswith("https://"):
        problems.append((f"NOTIFIER_PUBLIC_URL is {settings.NOTIFIER_PUBLIC_URL}: unsubscribe links and provider "
                         "callbacks must reach this server over HTTPS.",
                         "Set NOTIFIER_PUBLIC_URL to the https:// address users and providers reach.", "notifier.W005"))
    return [Warning(message, hint=f"{hint} See README, 'Production'.", id=check_id)
            for message, hint, check_id in problems]
