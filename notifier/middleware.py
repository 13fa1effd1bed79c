"""Every request gets one budget for its Redis work (notifier/redis_client.py), and health probes reach
/healthz whatever Host they send."""
from notifier.health import healthz
from notifier.redis_client import redis_budget


class RedisBudgetMiddleware:
    """All the Redis work of one request, and its wait on the broker, takes at most
    NOTIFIER_REDIS_TIMEOUT_SECONDS together."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with redis_budget():
            return self.get_response(request)


class HealthProbeMiddleware:
    """/healthz answers before Django checks the Host header against ALLOWED_HOSTS, and before the HTTPS
    redirect: probes (docker-compose's healthcheck, a load balancer) call it over plain HTTP, by IP, from
    inside the network, while ALLOWED_HOSTS names the host users reach. It reads nothing from the request,
    so the Host it came with does not matter."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            return healthz(request)
        return self.get_response(request)
