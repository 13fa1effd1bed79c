"""The asyncio event loop the push adapters share within a worker process."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading


class EventLoopThread:
    """One asyncio event loop per process, running in a daemon thread.

    Celery workers are synchronous; the asyncio SDKs (aioapns, firebase-admin's send_each_async) keep their
    HTTP/2 connections on this loop, so connections live as long as the process, not one task."""

    _lock = threading.Lock()
    _instance: EventLoopThread | None = None

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="provider-event-loop", daemon=True)
        self.thread.start()

    @classmethod
    def for_this_process(cls) -> EventLoopThread:
        # After a fork the child has the parent's object but not its thread: start a new loop.
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def submit(self, coroutine) -> concurrent.futures.Future:
        """Start `coroutine` on the loop; its result (or exception) arrives in the returned future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine, timeout: float):
        """Run `coroutine` on the loop and wait for its result (or exception) at most `timeout` s."""
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
