"""Which provider serves which channel, built once per process from settings.

settings.NOTIFIER_CHANNEL_PROVIDERS lists provider names per channel, first choice first;
settings.NOTIFIER_PROVIDER_CONFIG holds each provider's configuration (from environment variables). A
channel with no provider configured uses the sandbox. A name that is not built in is taken as the dotted
path of a module with a `build(config)` function, so a custom provider plugs in without changing notifier.
"""
from __future__ import annotations

import importlib
import threading

from django.conf import settings

from .base import Provider

PROVIDER_MODULES = {
    "sandbox": "notifier.providers.sandbox",
    "apns": "notifier.providers.apns",
    "fcm": "notifier.providers.fcm",
    "sendgrid": "notifier.providers.sendgrid",
    "smtp": "notifier.providers.smtp",
    "twilio": "notifier.providers.twilio",
}

_lock = threading.Lock()
_built: dict[tuple[str, str], Provider] = {}


def provider_names(channel: str) -> list[str]:
    return list(settings.NOTIFIER_CHANNEL_PROVIDERS.get(channel) or ["sandbox"])


def provider_get(name: str, channel: str) -> Provider:
    """The process-wide instance of a provider (adapters keep connection pools, so build them once)."""
    key = (name, channel)
    with _lock:
        if key not in _built:
            config = {
                "timeout": settings.NOTIFIER_PROVIDER_TIMEOUT_SECONDS,
                **getattr(settings, "NOTIFIER_PROVIDER_CONFIG", {}).get(name, {}),
                "channel": channel,
            }
            _built[key] = importlib.import_module(PROVIDER_MODULES.get(name, name)).build(config)
        return _built[key]


def configured_provider_names() -> list[str]:
    """Every provider some channel sends through, each once, in channel order (the sandbox is none: it
    has no circuit to show)."""
    names = (name for channel in settings.NOTIFIER_CHANNEL_PROVIDERS for name in provider_names(channel))
    return [name for name in dict.fromkeys(names) if name != "sandbox"]


def providers_for(channel: str) -> list[Provider]:
    return [provider_get(name, channel) for name in provider_names(channel)]


def providers_reset() -> int:
    """Close and forget every built provider (tests that change settings; worker shutdown: see
    notifier_project/celery.py). Returns how many were closed."""
    with _lock:
        for provider in _built.values():
            provider.close()
        closed = len(_built)
        _built.clear()
        return closed
