"""Production: PostgreSQL (pooled), Redis, Celery workers, behind a TLS proxy.

Refuses to start without SECRET_KEY, ALLOWED_HOSTS, the master keys, the audit key, a
PostgreSQL DATABASE_URL and REDIS_URL: nothing falls back to a default.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from agentkey.settings.env import env, env_bool, env_int, env_list, env_secret
from audit.signing import AuditKeyError, parse_audit_keys
from vault.keyring import KeyringError, parse_master_keys

_missing = [
    name
    for name, present in (
        ("SECRET_KEY (or SECRET_KEY_FILE)", bool(env_secret("SECRET_KEY"))),
        ("ALLOWED_HOSTS", bool(env_list("ALLOWED_HOSTS", []))),
        ("AGENTKEY_MASTER_KEYS (or AGENTKEY_MASTER_KEYS_FILE)", bool(env_secret("AGENTKEY_MASTER_KEYS"))),
        ("AGENTKEY_AUDIT_KEY (or AGENTKEY_AUDIT_KEY_FILE)", bool(env_secret("AGENTKEY_AUDIT_KEY"))),
        ("DATABASE_URL", env("DATABASE_URL").startswith(("postgres://", "postgresql://"))),
        ("REDIS_URL", bool(env("REDIS_URL"))),
    )
    if not present
]
if _missing:
    raise ImproperlyConfigured(
        "Production settings refuse to start without: " + ", ".join(_missing) + ". "
        "DATABASE_URL must be a postgres:// URL. See README.md, section Production."
    )

try:
    parse_master_keys(env_secret("AGENTKEY_MASTER_KEYS"))
except KeyringError as _exc:
    raise ImproperlyConfigured(f"AGENTKEY_MASTER_KEYS: {_exc}") from None

try:
    parse_audit_keys(env_secret("AGENTKEY_AUDIT_KEY"))
except AuditKeyError as _exc:
    raise ImproperlyConfigured(f"AGENTKEY_AUDIT_KEY: {_exc}") from None

from agentkey.settings.base import *  # noqa: E402, F403
from agentkey.settings.base import DATABASE_URL, TRUSTED_PROXY_COUNT, database_from_url  # noqa: E402

DEBUG = False
AGENTKEY_PRODUCTION = True
DATABASES = {"default": database_from_url(DATABASE_URL, pool=env_bool("AGENTKEY_DB_POOL", True))}
CELERY_TASK_ALWAYS_EAGER = False

MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = False
SECURE_SSL_REDIRECT = env_bool("AGENTKEY_SECURE_SSL_REDIRECT", True)
if TRUSTED_PROXY_COUNT > 0:
    # TLS is terminated by the trusted proxy in front; only then may it tell us the scheme.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("AGENTKEY_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("AGENTKEY_HSTS_SECONDS", 63072000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Preloading is hard to undo, so it is an explicit opt-in rather than a default.
SECURE_HSTS_PRELOAD = env_bool("AGENTKEY_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

if env("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
