"""Producer keys: `Authorization: Bearer <key>`. 401 for a missing or wrong key, 403 for a missing scope."""
from rest_framework import authentication, exceptions, permissions

from notifier.models import Producer
from notifier.models.producers import SCOPE_ADMIN, SCOPE_SEND, hash_key


class ProducerKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <producer key>'.")
        producer = Producer.objects.filter(key_hash=hash_key(key.strip()), is_active=True).first()
        if producer is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked producer key.")
        return (producer, None)

    def authenticate_header(self, request):
        return 'Bearer realm="notifier"'


class _HasScope(permissions.BasePermission):
    scope = ""

    def has_permission(self, request, view):
        producer = request.user
        if producer is None:
            return False  # DRF answers 401, since authenticate_header is set
        if not producer.has_scope(self.scope):
            self.message = f"This producer key lacks the '{self.scope}' scope."
            return False
        return True


class HasSendScope(_HasScope):
    scope = SCOPE_SEND


class HasAdminScope(_HasScope):
    scope = SCOPE_ADMIN
