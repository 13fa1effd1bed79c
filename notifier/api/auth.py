"""Two kinds of caller, both as `Authorization: Bearer <secret>`:

- a producer key (`nk_…`): a backend, with scopes (models/producers.py SCOPES). Every API view names the
  one scope each of its methods needs in `required_scopes`, e.g. {"GET": SCOPE_USERS_READ};
- a recipient token (`rt_…`): an app or browser acting for one user, issued by
  POST /api/v1/users/{user_id}/token, signed and expiring. It reaches only that user's own endpoints;
  any other user's ids answer 404, as if they did not exist.

401 for a missing, wrong or expired secret; 403 for a missing scope, naming it.
"""
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db.models.signals import post_delete, post_save
from rest_framework import authentication, exceptions, permissions

from notifier.models import Producer
from notifier.models.producers import hash_key
from notifier.process_cache import ProcessCache

RECIPIENT_TOKEN_PREFIX = "rt_"
_RECIPIENT_TOKEN_SALT = "notifier.recipient-token"


@dataclass(frozen=True)
class RecipientPrincipal:
    """The caller of a request made with a recipient token."""

    user_id: str
    # The recipient's row id, carried in the token so that inbox reads need not look the user up.
    recipient_id: int | None = None


def recipient_token_issue(user_id: str, recipient_id: int | None = None) -> str:
    payload = {"u": user_id} if recipient_id is None else {"u": user_id, "r": recipient_id}
    return RECIPIENT_TOKEN_PREFIX + signing.dumps(payload, salt=_RECIPIENT_TOKEN_SALT, compress=True)


# Recipient tokens whose signature this process has checked: token -> (principal, when it was signed). An app
# sends the same token with every request, and checking it (HMAC, zlib, JSON) cost about 50 µs of a cached
# inbox read. A token cannot be revoked, only expire, and its expiry is checked on every use as
# signing.loads checks it; only the signature's check is saved. Cleared when full: valid tokens alone get in.
_checked_tokens: dict[str, tuple[RecipientPrincipal, int]] = {}
CHECKED_TOKENS_MAX = 10_000


def recipient_token_principal(token: str) -> RecipientPrincipal | None:
    """Who a valid, unexpired recipient token was issued for, else None."""
    checked = _checked_tokens.get(token)
    if checked is not None:
        principal, signed_at = checked
        if time.time() - signed_at > settings.NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS:
            return None  # expired, as signing.loads(max_age=…) would say
        return principal
    if not token.startswith(RECIPIENT_TOKEN_PREFIX):
        return None
    signed = token[len(RECIPIENT_TOKEN_PREFIX):]
    try:
        payload = signing.loads(signed, salt=_RECIPIENT_TOKEN_SALT, max_age=settings.NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(payload.get("u"), str):
        return None
    principal = RecipientPrincipal(payload["u"], payload.get("r"))
    if len(_checked_tokens) >= CHECKED_TOKENS_MAX:
        _checked_tokens.clear()
    # The signed value is payload:timestamp:signature (django.core.signing.TimestampSigner).
    _checked_tokens[token] = (principal, signing.b62_decode(signed.rsplit(":", 2)[1]))
    return principal


# A revoked or rotated key stops working in every process within NOTIFIER_PROCESS_CACHE_SECONDS.
producers_by_key_hash = ProcessCache()


def producer_by_key(key: str) -> Producer | None:
    key_hash = hash_key(key)
    return producers_by_key_hash.get(
        key_hash, lambda: Producer.objects.filter(key_hash=key_hash, is_active=True).first()
    )


def _forget_producers(sender, **kwargs):
    producers_by_key_hash.clear()


post_save.connect(_forget_producers, sender=Producer, dispatch_uid="notifier.forget_producers.save")
post_delete.connect(_forget_producers, sender=Producer, dispatch_uid="notifier.forget_producers.delete")


def bearer_caller(header: str) -> Producer | RecipientPrincipal | None:
    """Who an `Authorization` header names: a producer or a recipient token's user; None without a header.
    Raises AuthenticationFailed for anything else (a wrong scheme, an unknown, revoked or expired secret).
    May query the database (a producer key the process has not cached)."""
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <producer key>'.")
    if key.startswith(RECIPIENT_TOKEN_PREFIX):
        principal = recipient_token_principal(key)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or expired recipient token.")
        return principal
    producer = producer_by_key(key)
    if producer is None:
        raise exceptions.AuthenticationFailed("Unknown or revoked producer key.")
    return producer


# What a 401 says it wants (RFC 9110 WWW-Authenticate), on every endpoint.
AUTHENTICATE_HEADER = 'Bearer realm="notifier"'


class ProducerKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        caller = bearer_caller(request.headers.get("Authorization", ""))
        return None if caller is None else (caller, None)

    def authenticate_header(self, request):
        return AUTHENTICATE_HEADER


RECIPIENT_TOKEN_REACH = "A recipient token reaches only its own user's inbox and preferences."


def scope_required(view, method: str) -> str | None:
    """The scope a producer key needs to call this method of this view. HEAD is GET; OPTIONS (the endpoint's
    description, as public as the OpenAPI schema) and a method the view lacks (405 follows) need none. A
    handler missing from the view's `required_scopes` raises KeyError: a forgotten scope is a bug that
    answers 500, never an open door."""
    method = "GET" if method == "HEAD" else method
    if method == "OPTIONS" or not hasattr(view, method.lower()):
        return None
    return view.required_scopes[method]


def _producer_may(permission, request, view) -> bool:
    scope = scope_required(view, request.method)
    if scope is not None and not request.user.has_scope(scope):
        permission.message = _missing_scope(scope)
        return False
    return True


def _missing_scope(scope: str) -> str:
    return f"This producer key lacks the '{scope}' scope."


class HasRequiredScope(permissions.BasePermission):
    """The default: a producer key with the scope the view names for the method."""

    def has_permission(self, request, view):
        if request.user is None:
            return False  # DRF answers 401, since authenticate_header is set
        if isinstance(request.user, RecipientPrincipal):
            self.message = RECIPIENT_TOKEN_REACH
            return False
        return _producer_may(self, request, view)


def user_reach_check(caller, user_id: str, scope: str | None) -> None:
    """May `caller` (a producer or a recipient token's user, never None) call an endpoint of user `user_id`
    that needs `scope`? A recipient token reaches its own user only, and another user's id is NotFound, so
    that ids cannot be probed; a producer key needs the scope (PermissionDenied naming it)."""
    if isinstance(caller, RecipientPrincipal):
        if caller.user_id != user_id:
            raise exceptions.NotFound()
    elif scope is not None and not caller.has_scope(scope):
        raise exceptions.PermissionDenied(_missing_scope(scope))


class IsProducerOrSameRecipient(permissions.BasePermission):
    """For /users/{user_id}/… endpoints an end user's app may call: a producer key with the scope the view
    names for the method, or a recipient token of that same user (user_reach_check)."""

    def has_permission(self, request, view):
        if request.user is None:
            return False  # DRF answers 401, since authenticate_header is set
        user_reach_check(request.user, view.kwargs.get("user_id"), scope_required(view, request.method))
        return True
