"""Settings, all from environment variables with defaults that run on one machine with no credentials.

DATABASE_URL unset means SQLite (the embedded default for a quick local run); tests and production use
PostgreSQL. REDIS_URL holds rate-limit windows, wake-up flags and caches; CELERY_BROKER_URL defaults to it.
The one setting without a default is SECRET_KEY when DEBUG is off (`make run` keeps one in var/secret-key).
"""
import json
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

# SECRET_KEY signs recipient tokens, unsubscribe links and admin sessions: whoever knows it can read any
# user's inbox. It comes from SECRET_KEY, else from the file SECRET_KEY_FILE names (default var/secret-key,
# which `make run` fills with a random key on its first start). With DEBUG off there is no fallback: a
# public key is refused here, where every process (the API's server, Celery, manage.py) loads the settings; a
# system check would not stop the API's server, which runs none.
DEVELOPMENT_SECRET_KEY = "notifier-insecure-development-key-change-me-in-production"  # public: DEBUG only


def _secret_key() -> str:
    if os.environ.get("SECRET_KEY", "").strip():
        return os.environ["SECRET_KEY"].strip()
    path = Path(os.environ.get("SECRET_KEY_FILE") or BASE_DIR / "var" / "secret-key")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except OSError as error:
        raise ImproperlyConfigured(f"SECRET_KEY_FILE {path} cannot be read: {error.strerror}.") from None


def _secret_key_weak(key: str) -> bool:
    # Django's own deploy check (security.W009), which the API's server and Celery never run.
    return len(key) < 50 or len(set(key)) < 5


SECRET_KEY = _secret_key()
if not DEBUG and (SECRET_KEY == DEVELOPMENT_SECRET_KEY or _secret_key_weak(SECRET_KEY)):
    raise ImproperlyConfigured(
        "SECRET_KEY is not set, is the public development key, or is too weak (under 50 characters or fewer "
        "than 5 distinct ones) and DEBUG is off: set SECRET_KEY to a random "
        "string made once with `python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`, or SECRET_KEY_FILE "
        "to a file holding one (`make run` keeps one in var/secret-key; see README, 'Production')."
    )
SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "*")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# HTTPS (README, "Production"). Off by default, so that `make run` serves plain HTTP on 127.0.0.1.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Health probes (load balancers, docker-compose) call /healthz over plain HTTP, by IP, from inside the
# network: notifier.middleware.HealthProbeMiddleware answers them before the HTTPS redirect and the Host check.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS: the header it sets to "https" on HTTPS requests (e.g.
# X-Forwarded-Proto). Only with a proxy that overwrites the client's own copy of that header.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + os.environ["SECURE_PROXY_SSL_HEADER"].upper().replace("-", "_"), "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets for /api/v1/docs, served from here, not a CDN
    "notifier",
]

MIDDLEWARE = [
    "notifier.middleware.RedisBudgetMiddleware",
    "notifier.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # CORS for the inbox endpoints only, for NOTIFIER_INBOX_ALLOWED_ORIGINS (notifier/api/cors.py).
    "notifier.api.cors.InboxCorsMiddleware",
    # The API's body size limit and its query and path checks (notifier/api/middleware.py).
    "notifier.api.middleware.ApiInputMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifier_project.urls"
WSGI_APPLICATION = "notifier_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'var' / 'notifier.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        # A kept connection the server has dropped (a restart, a failover, pg_terminate_backend) is noticed
        # and replaced before a request's first query or transaction uses it, instead of failing the request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default. API, workers and beat share the file: WAL lets readers run beside the writer,
    # and IMMEDIATE transactions take the write lock up front instead of failing half-way.
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with a health check that reads the socket instead of sending SELECT 1 on every
        # request (notifier/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "notifier.postgresql"
    # A server that accepts connections but never answers must not hang requests or /healthz forever.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = int(os.environ.get("DB_CONNECT_TIMEOUT", "5"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# collectstatic copies the static files here (`make run`, the Dockerfile); WhiteNoise serves them, the
# inbox widget among them (/static/notifier/inbox.js).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "var" / "static")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifier.api.auth.ProducerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["notifier.api.auth.HasRequiredScope"],
    "DEFAULT_RENDERER_CLASSES": ["notifier.api.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["notifier.api.renderers.ORJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "notifier.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "notifier API",
    "DESCRIPTION": "Self-hosted notification service: push, email, SMS and in-app inbox.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "notifier.api.schema.path_parameter_schemas",
                             # The error envelope of every 4xx each operation can answer, in one place.
                             "notifier.api.schema.error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "notifier.models.choices.Channel",
        "PriorityEnum": "notifier.models.choices.Priority",
        "NotificationStatusEnum": "notifier.models.choices.NotificationStatus",
        "DeliveryStatusEnum": "notifier.models.choices.DeliveryStatus",
        "EventSourceEnum": "notifier.models.choices.EventSource",
        "CampaignStatusEnum": "notifier.models.campaigns.CampaignStatus",
    },
}

# LOG_FORMAT=json: one JSON object a line (python-json-logger), carrying the delivery's context where the
# log call gives it (notification_id, delivery_id, channel, provider, attempt, producer: notifier/log_format.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "notifier.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # The SDKs' own INFO lines repeat ours (one per delivery, with provider, ids and outcome), and Twilio's
    # print every request's headers: keep their warnings and errors only. SDK_LOG_LEVEL=INFO to see them.
    "loggers": {
        name: {"level": os.environ.get("SDK_LOG_LEVEL", "WARNING")}
        for name in ("twilio.http_client", "httpx", "httpcore", "urllib3", "google.auth", "aioapns", "hpack", "h2")
    },
}

# --- notifier -------------------------------------------------------------------------------------------

# The most recipients one POST /api/v1/notifications may carry.
NOTIFIER_MAX_RECIPIENTS_PER_REQUEST = 1000
# The largest request body the API reads (a 413 beyond it, before reading). The orjson parser reads the
# stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to API bodies.
NOTIFIER_MAX_REQUEST_BYTES = int(os.environ.get("NOTIFIER_MAX_REQUEST_BYTES", str(1024 * 1024)))
# POST /api/v1/campaigns may be larger: a {"user_ids": [...]} segment lists up to 100,000 ids (about 2 MB
# of short ids); the same 413 beyond it.
NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES = int(os.environ.get("NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES", str(8 * 1024 * 1024)))
# The largest `data` of a notification (and of each recipient's own `data`), as JSON: it is copied into
# every notification, inbox item and sandbox message of the request.
NOTIFIER_MAX_DATA_BYTES = int(os.environ.get("NOTIFIER_MAX_DATA_BYTES", str(64 * 1024)))
# How many rows one route or deliver task claims at once (docs/architecture.md, "Throughput rules").
NOTIFIER_ROUTE_BATCH_SIZE = int(os.environ.get("NOTIFIER_ROUTE_BATCH_SIZE", "500"))
NOTIFIER_DELIVER_BATCH_SIZE = int(os.environ.get("NOTIFIER_DELIVER_BATCH_SIZE", "200"))
# Campaigns (notifier/campaigns/, docs/campaigns.md).
# Recipients per chunk: one chunk task routes them with a fixed number of queries.
NOTIFIER_CAMPAIGN_CHUNK_SIZE = int(os.environ.get("NOTIFIER_CAMPAIGN_CHUNK_SIZE", "1000"))
# The most user ids a {"user_ids": [...]} segment may list inline (a topic or a filter reaches more).
NOTIFIER_CAMPAIGN_MAX_INLINE_USER_IDS = int(os.environ.get("NOTIFIER_CAMPAIGN_MAX_INLINE_USER_IDS", "100000"))
# The fan-out routes a new chunk only while its campaign has fewer deliveries than this waiting to be sent:
# a campaign never piles up more work than the deliver workers take in a few seconds, so a pause or a
# cancel has little to stop and memory and queues stay flat whatever the segment's size.
NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES = int(os.environ.get("NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES", "20000"))
# Shedding: while more transactional deliveries (high and medium priority) than this are due and waiting,
# campaigns route no new chunk; they go on when the backlog is below it again. 0 turns shedding off.
NOTIFIER_CAMPAIGN_SHED_BACKLOG = int(os.environ.get("NOTIFIER_CAMPAIGN_SHED_BACKLOG", "5000"))
# A dry run decides every recipient of segments up to this size; a larger one is estimated from a
# random sample of this many (its answer says "sampled").
NOTIFIER_CAMPAIGN_DRY_RUN_EXACT_LIMIT = int(os.environ.get("NOTIFIER_CAMPAIGN_DRY_RUN_EXACT_LIMIT", "10000"))
# Low-priority deliveries (campaigns, bulk) are claimed in larger batches: SendGrid takes 1,000
# personalizations per request, and one message then wakes a worker for 1,000 sends.
NOTIFIER_DELIVER_BATCH_SIZE_LOW = int(os.environ.get("NOTIFIER_DELIVER_BATCH_SIZE_LOW", "1000"))
# A low-priority deliver task goes on claiming full batches for this long before it hands the queue back
# to a new wake-up (pipeline/dispatch.py, deliver_due).
NOTIFIER_DELIVER_DRAIN_SECONDS = float(os.environ.get("NOTIFIER_DELIVER_DRAIN_SECONDS", "10"))
# Chunks of one campaign being routed at once (published, not done): the fan-out makes no more meanwhile.
NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT = int(os.environ.get("NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT", "4"))
# A chunk published this long ago and still not routed (its message lost, its worker killed) is published again.
NOTIFIER_CAMPAIGN_CHUNK_REPUBLISH_SECONDS = float(os.environ.get("NOTIFIER_CAMPAIGN_CHUNK_REPUBLISH_SECONDS", "60"))
# A delivery claimed (status "sending") longer than this is taken to belong to a dead worker. It must
# outlast a deliver task's hard time limit (celeryconfig.task_time_limit, 330 s by default).
NOTIFIER_CLAIM_LEASE_SECONDS = int(os.environ.get("NOTIFIER_CLAIM_LEASE_SECONDS", "360"))
# Redis and the broker never hold a request (notifier/redis_client.py): all of one request's Redis calls and
# its wait on the wake-up publish (celery/celery#6046) take at most this long together, and outside a
# request each call at most this long. NOTIFIER_PUBLISH_TIMEOUT_SECONDS is its old name, still read.
NOTIFIER_REDIS_TIMEOUT_SECONDS = float(
    os.environ.get("NOTIFIER_REDIS_TIMEOUT_SECONDS", os.environ.get("NOTIFIER_PUBLISH_TIMEOUT_SECONDS", "2"))
)
# After a Redis server (or the broker) times out or refuses, each process stops asking it for this long:
# calls fail at once and their fallbacks apply; then one call tries again.
NOTIFIER_REDIS_BREAKER_SECONDS = float(os.environ.get("NOTIFIER_REDIS_BREAKER_SECONDS", "5"))
# How often beat runs the sweeper (celeryconfig.py reads the same variable). Rows due for longer than this
# get a wake-up even when one seems pending: its message may have been lost after its flag was set.
NOTIFIER_SWEEP_INTERVAL_SECONDS = float(os.environ.get("NOTIFIER_SWEEP_INTERVAL_SECONDS", "5"))

# Provider settings, from the environment. Only what is set is passed on, so each adapter's defaults
# apply to the rest (see the docstring of each module in notifier/providers/).
def _provider_config(**env_names) -> dict:
    return {key: os.environ[name] for key, name in env_names.items() if os.environ.get(name, "") != ""}


NOTIFIER_PROVIDER_CONFIG = {
    "apns": _provider_config(
        key="APNS_KEY", key_file="APNS_KEY_FILE", key_id="APNS_KEY_ID", team_id="APNS_TEAM_ID",
        topic="APNS_TOPIC", use_sandbox="APNS_USE_SANDBOX", host="APNS_HOST", port="APNS_PORT",
        ca_file="APNS_CA_FILE",
    ),
    "fcm": _provider_config(
        credentials_file="FCM_CREDENTIALS_FILE", project_id="FCM_PROJECT_ID", endpoint="FCM_ENDPOINT",
        concurrency="FCM_CONCURRENCY",
    ),
    "sendgrid": _provider_config(
        api_key="SENDGRID_API_KEY", host="SENDGRID_HOST", from_email="EMAIL_FROM", from_name="EMAIL_FROM_NAME",
    ),
    "smtp": _provider_config(
        host="SMTP_HOST", port="SMTP_PORT", username="SMTP_USERNAME", password="SMTP_PASSWORD",
        use_tls="SMTP_USE_TLS", use_ssl="SMTP_USE_SSL", from_email="EMAIL_FROM",
    ),
    "twilio": _provider_config(
        account_sid="TWILIO_ACCOUNT_SID", auth_token="TWILIO_AUTH_TOKEN", from_number="TWILIO_FROM_NUMBER",
        messaging_service_sid="TWILIO_MESSAGING_SERVICE_SID", base_url="TWILIO_BASE_URL",
        status_callback_url="TWILIO_STATUS_CALLBACK_URL", max_segments="SMS_MAX_SEGMENTS",
    ),
}
# Every adapter waits at most this long for one answer from its provider (connect, and each read), far
# below a deliver task's soft time limit (NOTIFIER_TASK_SOFT_TIME_LIMIT_SECONDS): a provider that hangs
# costs a batch seconds, and its circuit (below) opens after a few such timeouts.
# (notifier/providers/registry.py passes it to each adapter as its `timeout`).
NOTIFIER_PROVIDER_TIMEOUT_SECONDS = float(os.environ.get("NOTIFIER_PROVIDER_TIMEOUT_SECONDS", "10"))
if os.environ.get("APNS_USE_SANDBOX"):
    NOTIFIER_PROVIDER_CONFIG["apns"]["use_sandbox"] = env_bool("APNS_USE_SANDBOX")
for _flag in ("use_tls", "use_ssl"):
    if _flag in NOTIFIER_PROVIDER_CONFIG["smtp"]:
        NOTIFIER_PROVIDER_CONFIG["smtp"][_flag] = env_bool("SMTP_" + _flag.upper())

# Which provider serves each channel, first choice first (email: SendGrid, then SMTP when SendGrid fails
# transiently). NOTIFIER_<CHANNEL>_PROVIDERS overrides; otherwise every provider whose credentials are set,
# and the built-in sandbox when none are: it records what would be sent (GET /api/v1/sandbox/messages),
# so notifier runs with no credentials.
def _configured(*names) -> str:
    return ",".join(name for name in names if NOTIFIER_PROVIDER_CONFIG[name]) or "sandbox"


NOTIFIER_CHANNEL_PROVIDERS = {
    "push": env_list("NOTIFIER_PUSH_PROVIDERS", _configured("apns", "fcm")),
    "email": env_list("NOTIFIER_EMAIL_PROVIDERS", _configured("sendgrid", "smtp")),
    "sms": env_list("NOTIFIER_SMS_PROVIDERS", _configured("twilio")),
}
# SendGrid signs its Event Webhook (notifier/webhooks/sendgrid.py) with an ECDSA key; this is its public half,
# as SendGrid shows it (Settings → Mail Settings → Event Webhook → Signature Verification: base64 DER, no PEM
# lines). Added after the providers are chosen above: a verification key alone does not make SendGrid a
# sending provider. Without it every event post is refused (403).
if os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY"):
    NOTIFIER_PROVIDER_CONFIG["sendgrid"]["webhook_public_key"] = os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"]
# Low-priority email (campaigns) goes to SendGrid in batches of up to this many personalizations per request
# (notifier/providers/sendgrid.py; SendGrid takes 1,000 at most); 1 sends each on its own. Like the key above,
# added after the providers are chosen.
if os.environ.get("SENDGRID_BATCH_SIZE"):
    NOTIFIER_PROVIDER_CONFIG["sendgrid"]["batch_size"] = int(os.environ["SENDGRID_BATCH_SIZE"])
# Event ids a provider webhook already delivered are kept this long to drop repeats (SendGrid retries a
# batch for up to 24 hours); the sweeper deletes older ones.
NOTIFIER_WEBHOOK_EVENT_RETENTION_DAYS = int(os.environ.get("NOTIFIER_WEBHOOK_EVENT_RETENTION_DAYS", "3"))

# A circuit breaker per provider, shared by every worker through Redis (notifier/providers/circuit.py): this
# many transient failures in a row open it; it stays open for the cool-down, then one probe send decides;
# each failed probe doubles the cool-down, up to the maximum.
NOTIFIER_CIRCUIT_FAILURE_THRESHOLD = int(os.environ.get("NOTIFIER_CIRCUIT_FAILURE_THRESHOLD", "5"))
NOTIFIER_CIRCUIT_COOLDOWN_SECONDS = float(os.environ.get("NOTIFIER_CIRCUIT_COOLDOWN_SECONDS", "30"))
NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS = float(os.environ.get("NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS", "600"))
# Sends per second each provider may take, shared by every worker (notifier/providers/send_rate.py); a
# provider not listed, or set to 0, has no limit. Twilio's usual account limit is 50 per second.
NOTIFIER_PROVIDER_MAX_PER_SECOND = {
    name: rate
    for name, rate in {
        "twilio": float(os.environ.get("TWILIO_MAX_PER_SECOND", "50")),
        "sendgrid": float(os.environ.get("SENDGRID_MAX_PER_SECOND", "0")),
        "smtp": float(os.environ.get("SMTP_MAX_PER_SECOND", "0")),
        "apns": float(os.environ.get("APNS_MAX_PER_SECOND", "0")),
        "fcm": float(os.environ.get("FCM_MAX_PER_SECOND", "0")),
    }.items()
    if rate > 0
}

# Retries of transient provider errors, per priority: up to max_attempts sends, waiting a random time
# between 0 and min(max_delay, base_delay * 2^(attempt-1)) seconds (exponential backoff, full jitter).
# The wait lives in Delivery.next_attempt_at, never in a Celery countdown.
# NOTIFIER_RETRY_POLICY (JSON) changes any of it, e.g. '{"high": {"max_attempts": 3}}'.
NOTIFIER_RETRY_POLICY = {
    "high": {"max_attempts": 5, "base_delay": 2, "max_delay": 60},
    "medium": {"max_attempts": 6, "base_delay": 5, "max_delay": 600},
    "low": {"max_attempts": 8, "base_delay": 30, "max_delay": 3600},
}
for _priority, _changes in json.loads(os.environ.get("NOTIFIER_RETRY_POLICY", "{}")).items():
    NOTIFIER_RETRY_POLICY[_priority].update(_changes)
# How long a recipient token (POST /api/v1/users/{user_id}/token) stays valid.
NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS = int(os.environ.get("NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS", str(24 * 3600)))
# Idempotency keys are kept at least this long (the IETF draft and Stripe keep 24 hours).
NOTIFIER_IDEMPOTENCY_TTL_HOURS = int(os.environ.get("NOTIFIER_IDEMPOTENCY_TTL_HOURS", "24"))
# A provider's status report for a message id no delivery carries yet waits this long for the worker to
# record the send (pipeline/status.py, provider_events_apply).
NOTIFIER_PENDING_EVENT_RETENTION_SECONDS = int(os.environ.get("NOTIFIER_PENDING_EVENT_RETENTION_SECONDS", "86400"))

# --- preferences, quiet hours and rate limits (notifier/pipeline/preferences.py, holds.py, rate_limits.py) ---
# A channel a user has said nothing about is enabled.
NOTIFIER_DEFAULT_CHANNEL_PREFERENCES = {"push": True, "email": True, "sms": True, "in_app": True}
# Channels whose non-urgent deliveries wait for the end of a user's quiet hours. The in-app inbox is silent.
NOTIFIER_QUIET_HOURS_CHANNELS = env_list("NOTIFIER_QUIET_HOURS_CHANNELS", "push,email,sms")
# How many held deliveries one beat tick releases per batch (it loops until none are due).
NOTIFIER_RELEASE_BATCH_SIZE = int(os.environ.get("NOTIFIER_RELEASE_BATCH_SIZE", "1000"))
# Per-user sliding windows: (limit, window in seconds). "channel" counts one notification on one channel
# (however many devices); "type" counts notifications of a type key or a category. Critical types are exempt.
# NOTIFIER_RATE_LIMITS_ENABLED=false turns them off (benchmarks).
NOTIFIER_RATE_LIMITS_ENABLED = env_bool("NOTIFIER_RATE_LIMITS_ENABLED", True)
NOTIFIER_RATE_LIMITS = {
    "channel": {
        "push": (30, 3600),
        "sms": (5, 3600),
        "email": (10, 86400),
    },
    "type": {
        "marketing": (1, 86400),
    },
}
# Per-producer API quota on POST /api/v1/notifications: requests per window (Producer.quota_requests
# overrides the count). Over it: 429 with Retry-After.
# Producer keys and notification types are read on every API request; each process keeps them this long
# (a revoked key or an edited type applies everywhere within it; 0 reads the database every time).
NOTIFIER_PROCESS_CACHE_SECONDS = float(os.environ.get("NOTIFIER_PROCESS_CACHE_SECONDS", "10"))
NOTIFIER_PRODUCER_QUOTA_REQUESTS = int(os.environ.get("NOTIFIER_PRODUCER_QUOTA_REQUESTS", "60000"))
NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS = int(os.environ.get("NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS", "60"))

# --- templates, inbox and digests (README, "Templates, inbox and digests") -------------------------------
# Where links in messages point (one-click unsubscribe), as the recipients' mail clients reach this server.
NOTIFIER_PUBLIC_URL = os.environ.get("NOTIFIER_PUBLIC_URL", "http://127.0.0.1:8000")
# Twilio posts each message's delivery status to our webhook (notifier/webhooks/twilio.py). With
# NOTIFIER_PUBLIC_URL set (Twilio cannot reach the local default) and no TWILIO_STATUS_CALLBACK_URL, the
# callback URL is the webhook's path under it.
if os.environ.get("NOTIFIER_PUBLIC_URL") and NOTIFIER_PROVIDER_CONFIG["twilio"]:
    NOTIFIER_PROVIDER_CONFIG["twilio"].setdefault(
        "status_callback_url", NOTIFIER_PUBLIC_URL.rstrip("/") + "/api/v1/webhooks/twilio/status"
    )
# Inbox items older than this are deleted by beat, in batches.
NOTIFIER_INBOX_RETENTION_DAYS = int(os.environ.get("NOTIFIER_INBOX_RETENTION_DAYS", "90"))
# The unread badge counts at most this many (an index range scan of at most this many entries); above it
# the API answers the cap with "unread_count_capped": true and apps show "999+".
NOTIFIER_INBOX_UNREAD_COUNT_CAP = int(os.environ.get("NOTIFIER_INBOX_UNREAD_COUNT_CAP", "999"))
# Each user's first inbox page and badge are cached in Redis for at most this many seconds (0: no cache). Writes
# drop a user's entry at once (notifier/inbox_cache.py); the lifetime bounds only what a write could not drop
# while Redis was failing, and the memory: about 5 KB per user read within it.
NOTIFIER_INBOX_CACHE_SECONDS = int(os.environ.get("NOTIFIER_INBOX_CACHE_SECONDS", "60"))
# A live inbox stream (Server-Sent Events) ends after this many seconds and the browser reconnects
# (EventSource does so by itself, sending Last-Event-ID); a comment line keeps idle proxies from closing it.
NOTIFIER_INBOX_STREAM_SECONDS = int(os.environ.get("NOTIFIER_INBOX_STREAM_SECONDS", "300"))
NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS = float(os.environ.get("NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS", "15"))
# The stream server (notifier/streams: `uvicorn notifier.streams.asgi:app`, the Procfile's `stream` line), which
# serves the stream path that production routes to it. Per process: at most this many open streams (then
# 503), this many threads for its database work (so at most as many connections), and a PING on its one
# Redis connection this often (silent for that long plus NOTIFIER_REDIS_TIMEOUT_SECONDS: Redis is gone, and
# every stream of the process ends; its clients reconnect and are replayed what they missed).
NOTIFIER_STREAM_MAX_OPEN = int(os.environ.get("NOTIFIER_STREAM_MAX_OPEN", "20000"))
NOTIFIER_STREAM_DATABASE_THREADS = int(os.environ.get("NOTIFIER_STREAM_DATABASE_THREADS", "4"))
NOTIFIER_STREAM_REDIS_PING_SECONDS = float(os.environ.get("NOTIFIER_STREAM_REDIS_PING_SECONDS", "5"))
# Where the inbox widget on notifier's own pages (/demo/inbox) opens its stream, when the stream server is on
# another origin than the API (`make run`: http://127.0.0.1:8001). Empty: the API's own origin (a proxy routes
# the path, as docker-compose's does).
NOTIFIER_INBOX_STREAM_URL = os.environ.get("NOTIFIER_INBOX_STREAM_URL", "").rstrip("/")

# --- the end user's side: the hosted preference center and the inbox widget (docs/end-user.md) ----------
# Origins (scheme://host[:port]) whose pages may call the inbox endpoints from a browser (the widget,
# static/notifier/inbox.js, embedded in a producer's site): CORS on those endpoints only, nothing else.
# "*" allows any origin (the endpoints take a bearer token, never a cookie).
NOTIFIER_INBOX_ALLOWED_ORIGINS = env_list("NOTIFIER_INBOX_ALLOWED_ORIGINS", "")
# How long a preference center link lasts: minted by POST /api/v1/users/{user_id}/preferences-link (by
# default, and at most), and the one every email carries as {{ preferences_url }} (an email is read weeks later).
NOTIFIER_PREFERENCES_LINK_TTL_SECONDS = int(os.environ.get("NOTIFIER_PREFERENCES_LINK_TTL_SECONDS", str(7 * 86400)))
NOTIFIER_PREFERENCES_LINK_MAX_TTL_SECONDS = int(os.environ.get("NOTIFIER_PREFERENCES_LINK_MAX_TTL_SECONDS",
                                                               str(90 * 86400)))
NOTIFIER_PREFERENCES_EMAIL_LINK_TTL_SECONDS = int(os.environ.get("NOTIFIER_PREFERENCES_EMAIL_LINK_TTL_SECONDS",
                                                                 str(90 * 86400)))
# The preference center's branding: the name in its heading, a logo (an https:// URL or a path on this
# server; none by default) and the accent colour of its switches and buttons (#rgb or #rrggbb).
NOTIFIER_BRAND_NAME = os.environ.get("NOTIFIER_BRAND_NAME", "notifier").strip() or "notifier"
NOTIFIER_BRAND_LOGO_URL = os.environ.get("NOTIFIER_BRAND_LOGO_URL", "").strip()
NOTIFIER_BRAND_ACCENT_COLOR = os.environ.get("NOTIFIER_BRAND_ACCENT_COLOR", "#1f6feb").strip()
if not re.fullmatch(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", NOTIFIER_BRAND_ACCENT_COLOR):
    raise ImproperlyConfigured(f"NOTIFIER_BRAND_ACCENT_COLOR must be a colour as #rgb or #rrggbb, not "
                               f"{NOTIFIER_BRAND_ACCENT_COLOR!r}.")
if NOTIFIER_BRAND_LOGO_URL and not re.match(r"(https?://|/)[^\s\"'<>]*$", NOTIFIER_BRAND_LOGO_URL):
    raise ImproperlyConfigured("NOTIFIER_BRAND_LOGO_URL must be an http(s):// URL or a path starting with /.")
# /demo/inbox (the inbox widget for NOTIFIER_DEMO_USER_ID, with its preference center link): on with DEBUG,
# or with NOTIFIER_DEMO_PAGES=1 (`make run` sets it). It mints that user's tokens for whoever opens it.
NOTIFIER_DEMO_PAGES = env_bool("NOTIFIER_DEMO_PAGES", DEBUG)
NOTIFIER_DEMO_USER_ID = os.environ.get("NOTIFIER_DEMO_USER_ID", "u_42")

# --- metrics (notifier/metrics.py, README "Operations and monitoring") ------------------------------------

# GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`. Without a token it is off (404), unless
# NOTIFIER_METRICS_PUBLIC=1 opens it to whoever reaches it (a private network, a local run).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
NOTIFIER_METRICS_PUBLIC = env_bool("NOTIFIER_METRICS_PUBLIC", False)
# The queue gauges are counted at scrape time; a slow count is cut off and the scrape answers without them.
NOTIFIER_METRICS_QUERY_TIMEOUT_MS = int(os.environ.get("NOTIFIER_METRICS_QUERY_TIMEOUT_MS", "2000"))
