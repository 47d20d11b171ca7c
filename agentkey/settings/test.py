"""Settings for the test suite: PostgreSQL and Redis, as in production.

The append-only audit trigger and the shared rate-limit counters are part of
the product, so tests run on the real services (DATABASE_URL / REDIS_URL, or
the local defaults on 127.0.0.1).
"""

from __future__ import annotations

import base64
import os
import re

from agentkey.settings.base import *  # noqa: F403
from agentkey.settings.base import database_from_url
from agentkey.settings.env import env, env_bool

SECRET_KEY = "test-only-secret-key-not-for-production"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

DATABASES = {
    "default": database_from_url(
        env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentkey"),
        pool=False,
    )
}
DATABASES["default"]["TEST"] = {"NAME": env("AGENTKEY_TEST_DB_NAME", "agentkey_test")}

# Parallel workers (pytest-xdist) each get their own Redis database, because
# every test starts by emptying it (fresh rate-limit budgets).
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/15")
_worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
if _worker:
    REDIS_URL = re.sub(r"/\d*$", "", REDIS_URL) + f"/{(10 + int(_worker.group(1))) % 16}"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "agentkey-test",
        # Production keeps 2 s. Tests start up to 50 requests at the same instant on a shared 2-core
        # machine, where opening 50 Redis connections at once can take longer than that.
        "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
    }
}

# Two master keys so rotation is exercised; fixed so failures reproduce.
_KEY_A = base64.b64encode(bytes(range(32))).decode()
_KEY_B = base64.b64encode(bytes(range(32, 64))).decode()
TEST_MASTER_KEY_A = f"testA:{_KEY_A}"
TEST_MASTER_KEY_B = f"testB:{_KEY_B}"
AGENTKEY_MASTER_KEYS = TEST_MASTER_KEY_A
AGENTKEY_MASTER_KEYS_GENERATED = None
AGENTKEY_AUDIT_KEY = "testaudit:" + base64.b64encode(bytes(range(64, 96))).decode()
AGENTKEY_AUDIT_KEY_GENERATED = None
AGENTKEY_AUDIT_SEAL_GRACE = 0.0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# --- Celery and notifications (issue #4) ---
# Eager and brokerless, unless a test starts a real worker (it passes these in the environment).
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "memory://")
# Delivery rows are written; tests run the delivery task themselves (or ask for "background").
AGENTKEY_NOTIFICATIONS_DISPATCH = env("AGENTKEY_NOTIFICATIONS_DISPATCH", "manual")
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
