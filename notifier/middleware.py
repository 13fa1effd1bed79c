"""Every request gets one budget for its Redis work (notifier/redis_client.py)."""
from notifier.redis_client import redis_budget


class RedisBudgetMiddleware:
    """All the Redis work of one request, and its wait on the broker, takes at most
    NOTIFIER_REDIS_TIMEOUT_SECONDS together."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with redis_budget():
            return self.get_response(request)
