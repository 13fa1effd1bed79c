"""A provider for pipeline tests whose answers a test scripts per target, through Redis so that a worker in
another process follows the same script. It tests our pipeline, not an SDK: the adapters are tested
against fake provider servers in tests/providers.

Use it with NOTIFIER_<CHANNEL>_PROVIDERS=tests.support.scripted_provider.
"""
import json
import time

import redis
from django.conf import settings

from notifier.providers.base import Message, PermanentError, Provider, RateLimited, SendResult, TransientError

SCRIPT_KEY = "scripted:outcomes:"
SENT_KEY = "scripted:sent"


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def script(target: str, *outcomes: dict) -> None:
    """Queue answers for a target, used one per send; once used up, sends succeed.
    An outcome is {"kind": "transient" | "permanent" | "rate_limited" | "sleep" | "ok" | "die", ...}:
    "ok" may set the "provider_message_id"; "die" raises WorkerDied, as if the worker died mid-send."""
    _redis().rpush(SCRIPT_KEY + target, *[json.dumps(o) for o in outcomes])


def scripted_left(target: str) -> int:
    """How many scripted answers for `target` no send has taken yet."""
    return _redis().llen(SCRIPT_KEY + target)


class WorkerDied(BaseException):
    """Raised by a "die" outcome. A BaseException, like the SystemExit of a dying worker: no adapter
    turns it into a provider error."""


def sent() -> list[dict]:
    return [json.loads(item) for item in _redis().lrange(SENT_KEY, 0, -1)]


class ScriptedProvider(Provider):
    name = "scripted"

    def __init__(self, channel):
        self.channel = channel

    def send(self, message: Message) -> SendResult:
        raw = _redis().lpop(SCRIPT_KEY + message.to)
        outcome = json.loads(raw) if raw else {"kind": "ok"}
        kind = outcome["kind"]
        if kind == "sleep":
            time.sleep(outcome["seconds"])
        if kind == "transient":
            raise TransientError("scripted outage", code=outcome.get("code", "503"))
        if kind == "permanent":
            raise PermanentError("scripted refusal", code=outcome.get("code", "400"),
                                 target_gone=outcome.get("target_gone", False))
        if kind == "rate_limited":
            raise RateLimited("scripted rate limit", retry_after=outcome.get("retry_after"), code="429")
        if kind == "die":
            raise WorkerDied(message.to)
        _redis().rpush(SENT_KEY, json.dumps({"to": message.to, "delivery_id": message.delivery_id,
                                             "title": message.title, "body": message.body, "at": time.time()}))
        return SendResult(provider_message_id=outcome.get("provider_message_id", f"scripted-{message.delivery_id}"))


def build(config):
    return ScriptedProvider(config["channel"])
