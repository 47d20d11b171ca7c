"""Settings shared by every environment; on their own they are the embedded default.

The embedded default needs no services: SQLite, local-memory cache, Celery tasks
run eagerly, and a master key generated into ``var/`` with a warning. Every
value can be overridden from the environment.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from csp import constants as csp_constants

from agentkey.settings.env import env, env_bool, env_int, env_list, env_secret

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env("AGENTKEY_VAR_DIR", str(BASE_DIR / "var")))


def _local_secret(filename: str, make: Any) -> str:
    """A value generated once into ``var/`` (embedded default only), mode 0600."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text(encoding="utf-8").strip()


# --- core ------------------------------------------------------------------------------------------

SECRET_KEY = env_secret("SECRET_KEY") or _local_secret("secret_key", lambda: secrets.token_urlsafe(50))
DEBUG = env_bool("DJANGO_DEBUG", False)
AGENTKEY_PRODUCTION = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
AGENTKEY_PUBLIC_URL = env("AGENTKEY_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "corsheaders",
    "django_htmx",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "agentkey.apps.AgentKeyConfig",
    "audit",
    "vault",
    "accounts",
    "notifications",
    "catalog",
    "grants",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "agentkey.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "agentkey.core.middleware.RequestContextMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "agentkey.core.middleware.ConsoleRateLimitMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agentkey.urls"
WSGI_APPLICATION = "agentkey.wsgi.application"
ASGI_APPLICATION = "agentkey.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APPEND_SLASH = False

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
                "csp.context_processors.nonce",
                "accounts.context_processors.console",
            ],
        },
    },
]

# --- database --------------------------------------------------------------------------------------


def database_from_url(url: str, *, pool: bool) -> dict[str, Any]:
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    engine = config["ENGINE"]
    options = config.setdefault("OPTIONS", {})
    if engine.endswith("postgresql"):
        if pool:
            # psycopg_pool: connections are reused across requests and checked on checkout.
            options["pool"] = {
                "min_size": env_int("AGENTKEY_DB_POOL_MIN", 2),
                "max_size": env_int("AGENTKEY_DB_POOL_MAX", 10),
                "timeout": env_int("AGENTKEY_DB_POOL_TIMEOUT", 10),
            }
            config["CONN_MAX_AGE"] = 0
        else:
            config["CONN_MAX_AGE"] = env_int("AGENTKEY_DB_CONN_MAX_AGE", 60)
            config["CONN_HEALTH_CHECKS"] = True
        if env_bool("AGENTKEY_DB_PREPARE", True):
            # The hot path's statements (agentkey/core/statements.py) bind server-side and are
            # prepared on first use, once per connection: no parsing or planning per vend. The
            # ORM's cursors bind client-side and never prepare, so only those few are. Turn off
            # behind a pooler that cannot keep prepared statements (PgBouncer in transaction
            # mode before 1.21, or with max_prepared_statements = 0).
            options["prepare_threshold"] = 0
    elif engine.endswith("sqlite3"):
        # WAL lets readers run during a write; IMMEDIATE takes the write lock up
        # front so concurrent writers queue instead of failing with "locked".
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)
        options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    return config


DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'agentkey.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL, pool=env_bool("AGENTKEY_DB_POOL", False))}

# --- cache, rate limits ----------------------------------------------------------------------------

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("AGENTKEY_CACHE_PREFIX", "agentkey"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = env_bool("AGENTKEY_RATELIMIT_ENABLE", True)
AGENTKEY_RATELIMITS = {
    "preauth": env("AGENTKEY_RATELIMIT_PREAUTH", "600/m"),
    "read": env("AGENTKEY_RATELIMIT_READ", "120/m"),
    "credential": env("AGENTKEY_RATELIMIT_CREDENTIAL", "60/m"),
    "request": env("AGENTKEY_RATELIMIT_REQUEST", "10/h"),
    "admin": env("AGENTKEY_RATELIMIT_ADMIN", "30/m"),
}
# Tiers that still serve when the cache is down (uncounted). Credential fetches
# are never listed by default: without a working limiter they fail closed.
AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS = env_list("AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS", [])
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- vault -----------------------------------------------------------------------------------------

AGENTKEY_MASTER_KEYS = env_secret("AGENTKEY_MASTER_KEYS")
AGENTKEY_MASTER_KEYS_GENERATED: str | None = None
if not AGENTKEY_MASTER_KEYS:
    AGENTKEY_MASTER_KEYS = _local_secret(
        "master.keys", lambda: "local1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    AGENTKEY_MASTER_KEYS_GENERATED = str(VAR_DIR / "master.keys")

# --- audit (docs/audit-verification.md) ----------------------------------------------------------

# Signs audit events and checkpoints; kept out of the database, like the master keys.
AGENTKEY_AUDIT_KEY = env_secret("AGENTKEY_AUDIT_KEY")
AGENTKEY_AUDIT_KEY_GENERATED: str | None = None
if not AGENTKEY_AUDIT_KEY:
    AGENTKEY_AUDIT_KEY = _local_secret(
        "audit.key", lambda: "local1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    AGENTKEY_AUDIT_KEY_GENERATED = str(VAR_DIR / "audit.key")
# Copies of each checkpoint outside the database: a JSON line appended to a file, and/or a POST.
AGENTKEY_AUDIT_ANCHOR_FILE = env("AGENTKEY_AUDIT_ANCHOR_FILE")
AGENTKEY_AUDIT_ANCHOR_URL = env("AGENTKEY_AUDIT_ANCHOR_URL")
AGENTKEY_AUDIT_SEAL_SECONDS = env_int("AGENTKEY_AUDIT_SEAL_SECONDS", 60)
# Seconds to let an id drawn from the sequence get its transaction id; seconds to wait for
# older transactions to end before postponing a seal (audit.sealing).
AGENTKEY_AUDIT_SEAL_GRACE = 1.0
AGENTKEY_AUDIT_SEAL_WAIT = 10.0

# --- agent API -------------------------------------------------------------------------------------

AGENTKEY_MAX_BODY_BYTES = 8192
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
AGENT_CORS_ORIGINS = env_list("AGENT_CORS_ORIGINS", [])
CORS_ALLOWED_ORIGINS = AGENT_CORS_ORIGINS
CORS_URLS_REGEX = r"^/(api|mcp)(/.*)?$"
CORS_ALLOW_HEADERS = ["authorization", "content-type"]
CORS_EXPOSE_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Policy",
]
CORS_PREFLIGHT_MAX_AGE = 600

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["agentkey.core.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "agentkey.core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "UNICODE_JSON": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AgentKey agent API",
    "DESCRIPTION": (
        "Agents start with zero access, request tools with a reason, and fetch credentials on demand "
        "once a human approves. Authenticate with `Authorization: Bearer sk_agent_...`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api",
    "PREPROCESSING_HOOKS": ["agentkey.schema.drop_slash_aliases"],
}

# --- Celery and notifications (issue #4) -----------------------------------------------------------
# Redis is the broker in production; without REDIS_URL (the embedded default) tasks run eagerly
# and notifications are sent from a background thread of the web process.

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Publishing must never hold up a caller for long: connect within 2 s, give up on a dead socket
# within 5 s, and retry a publish once at most (that one retry reconnects a long-lived producer
# after a broker restart). A publish that fails is logged; the sweep job queues the row again.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Longer than the longest retry countdown (12 h ± 20 %), or Redis would hand a waiting
    # retry to a second worker every hour. Lost tasks are the sweep job's business anyway.
    "visibility_timeout": 15 * 3600,
}
# Worker logs go through LOGGING (and its secret-redacting filter), not Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# "background": hand deliveries to the broker (or, eager, to a thread) after commit;
# "manual": write the rows only (the test settings: tests drive the task themselves).
AGENTKEY_NOTIFICATIONS_DISPATCH = env("AGENTKEY_NOTIFICATIONS_DISPATCH", "background")
AGENTKEY_NOTIFICATIONS_TIMEOUT = env_int("AGENTKEY_NOTIFICATIONS_TIMEOUT", 10)  # seconds per attempt
AGENTKEY_NOTIFICATIONS_SWEEP_SECONDS = env_int("AGENTKEY_NOTIFICATIONS_SWEEP_SECONDS", 60)
AGENTKEY_NOTIFICATIONS_REDELIVER_AFTER = env_int("AGENTKEY_NOTIFICATIONS_REDELIVER_AFTER", 60)
AGENTKEY_NOTIFICATIONS_REQUEUE_AFTER = env_int("AGENTKEY_NOTIFICATIONS_REQUEUE_AFTER", 300)
AGENTKEY_NOTIFICATIONS_STUCK_AFTER = env_int("AGENTKEY_NOTIFICATIONS_STUCK_AFTER", 300)
AGENTKEY_NOTIFICATIONS_KEEP_DAYS = env_int("AGENTKEY_NOTIFICATIONS_KEEP_DAYS", 30)
# Lets outbound URLs (webhooks) point at loopback addresses: tests and local development only.
AGENTKEY_ALLOW_LOOPBACK_URLS = env_bool("AGENTKEY_ALLOW_LOOPBACK_URLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)

# --- anomaly rules (grants.anomalies; docs/governance.md) -----------------------------------------
# Vend rate: the last 60 minutes against the agent's own mean per active hour over the previous days.
AGENTKEY_ANOMALY_JOB_SECONDS = env_int("AGENTKEY_ANOMALY_JOB_SECONDS", 60)
AGENTKEY_ANOMALY_VEND_RATE_FLOOR = env_int("AGENTKEY_ANOMALY_VEND_RATE_FLOOR", 50)
AGENTKEY_ANOMALY_VEND_RATE_FACTOR = env_int("AGENTKEY_ANOMALY_VEND_RATE_FACTOR", 10)
AGENTKEY_ANOMALY_BASELINE_DAYS = env_int("AGENTKEY_ANOMALY_BASELINE_DAYS", 7)
# Off hours: an hour of the day (UTC) with no vend in the lookback, for an agent with enough history.
AGENTKEY_ANOMALY_OFF_HOURS_LOOKBACK_DAYS = env_int("AGENTKEY_ANOMALY_OFF_HOURS_LOOKBACK_DAYS", 14)
AGENTKEY_ANOMALY_OFF_HOURS_MIN_HISTORY_DAYS = env_int("AGENTKEY_ANOMALY_OFF_HOURS_MIN_HISTORY_DAYS", 7)
# Authentication failures (401/403) from one client address within a fixed window.
AGENTKEY_ANOMALY_AUTH_FAILURES = env_int("AGENTKEY_ANOMALY_AUTH_FAILURES", 20)
AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS = env_int("AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS", 300)
# New tools: requests for this many distinct tools the agent never had, within the window.
AGENTKEY_ANOMALY_NEW_TOOLS = env_int("AGENTKEY_ANOMALY_NEW_TOOLS", 5)
AGENTKEY_ANOMALY_NEW_TOOLS_WINDOW_MINUTES = env_int("AGENTKEY_ANOMALY_NEW_TOOLS_WINDOW_MINUTES", 10)

CELERY_BEAT_SCHEDULE = {
    "expire-due-grants": {"task": "grants.expire_due_grants", "schedule": 60.0},
    "suspend-agents-past-validity": {"task": "grants.suspend_agents_past_validity", "schedule": 60.0},
    "access-reviews": {"task": "grants.access_reviews", "schedule": 300.0},
    "expire-stale-quorums": {"task": "grants.expire_stale_quorums", "schedule": 60.0},
    "seal-audit-checkpoints": {
        "task": "audit.seal_checkpoints",
        "schedule": float(AGENTKEY_AUDIT_SEAL_SECONDS),
    },
    "sweep-notification-deliveries": {
        "task": "notifications.sweep_deliveries",
        "schedule": float(AGENTKEY_NOTIFICATIONS_SWEEP_SECONDS),
    },
    "detect-anomalies": {"task": "grants.detect_anomalies", "schedule": float(AGENTKEY_ANOMALY_JOB_SECONDS)},
}

# --- AI setup-guide drafts (catalog.drafts) -------------------------------------------------------

# An OpenAI-compatible chat-completions endpoint chosen by the operator (trusted, unlike the
# documentation pages, which are fetched through agentkey.core.http). Without a base URL and a
# model, drafts are written by the offline extractor. Credentials are never sent to the model.
AGENTKEY_LLM_BASE_URL = env("AGENTKEY_LLM_BASE_URL").rstrip("/")
AGENTKEY_LLM_API_KEY = env_secret("AGENTKEY_LLM_API_KEY")
AGENTKEY_LLM_MODEL = env("AGENTKEY_LLM_MODEL")
AGENTKEY_LLM_CONNECT_TIMEOUT = env_int("AGENTKEY_LLM_CONNECT_TIMEOUT", 10)
# Longest silence between two streamed chunks, and the whole generation's deadline (seconds).
AGENTKEY_LLM_READ_TIMEOUT = env_int("AGENTKEY_LLM_READ_TIMEOUT", 60)
AGENTKEY_LLM_TIMEOUT = env_int("AGENTKEY_LLM_TIMEOUT", 180)

# --- humans, security headers ----------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("AGENTKEY_SESSION_SECONDS", 12 * 3600)
SESSION_COOKIE_NAME = "agentkey_session"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page, never from the cookie
CSRF_COOKIE_NAME = "agentkey_csrf"

# --- sign-in (django-allauth) ----------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console:home"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[AgentKey] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if AGENTKEY_PUBLIC_URL.startswith("https") else "http"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_NOTIFICATIONS = True
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_ADAPTER = "accounts.mfa.MFAAdapter"  # TOTP keys and recovery seeds sealed under the master keys
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_TOTP_ISSUER = "AgentKey"
MFA_TOTP_TOLERANCE = 1  # accept the adjacent 30 s step: phone clocks drift
# Browsers treat http://localhost as a secure context; production always runs on https.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = env_bool("AGENTKEY_WEBAUTHN_ALLOW_INSECURE_ORIGIN", True)

# --- content security policy (django-csp) ----------------------------------------------------------

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", csp_constants.NONCE],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("AGENTKEY_STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "AgentKey <agentkey@localhost>")

# --- logging ---------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "agentkey.core.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": env("AGENTKEY_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
