"""A small time-bounded cache in process memory, for rows read on every API request that change rarely
(producer keys, notification types). It saves a database round trip per request on the accept path; a
change made in another process applies within NOTIFIER_PROCESS_CACHE_SECONDS, and at once in the process
that made it (the models clear it on save and delete)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from django.conf import settings

_MISSING = object()


class ProcessCache:
    def __init__(self, max_entries: int = 1024):
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key, load: Callable[[], Any]):
        """The cached value for `key`, or `load()` (cached unless it returns None, so that unknown keys
        cannot fill the cache)."""
        entry = self._entries.get(key, _MISSING)
        now = time.monotonic()
        if entry is not _MISSING and entry[0] > now:
            return entry[1]
        value = load()
        if value is not None and settings.NOTIFIER_PROCESS_CACHE_SECONDS > 0:
            with self._lock:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
                self._entries[key] = (now + settings.NOTIFIER_PROCESS_CACHE_SECONDS, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
