# syntax=docker/dockerfile:1
# AgentKey production image: gunicorn serving the REST API, admin and /mcp on :8000.
# The same image runs the Celery worker and beat and one-shot manage.py commands (see compose.yaml).
# No secret is baked in: SECRET_KEY, AGENTKEY_MASTER_KEYS, DATABASE_URL and REDIS_URL come from the
# environment (or *_FILE) at run time, and the production settings refuse to start without them.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtual environment with AgentKey and its dependencies ---------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# Every dependency ships wheels (psycopg[binary], cryptography), so no compiler is needed.
RUN pip install --upgrade pip \
    && pip install .

# The application tree the runtime runs from: a clean copy of the context (.dockerignore keeps out
# tests, local state and secrets), because the wheel carries Python modules only, not templates/.
COPY . /app

# Static files are collected at build time. The production settings insist on every secret being
# set, so this one step gets throwaway values that exist only in this RUN (never ENV or ARG): a
# build-only SECRET_KEY and all-zero master and audit keys that never encrypt or sign anything. Nothing connects
# to the database or Redis here.
WORKDIR /app
RUN DJANGO_SETTINGS_MODULE=agentkey.settings.production \
    SECRET_KEY=collectstatic-build-only-not-a-secret \
    ALLOWED_HOSTS=localhost \
    AGENTKEY_MASTER_KEYS=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    AGENTKEY_AUDIT_KEY=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    DATABASE_URL=postgres://build@localhost:5432/build \
    REDIS_URL=redis://localhost:6379/0 \
    AGENTKEY_STATIC_ROOT=/app/static \
    AGENTKEY_VAR_DIR=/tmp/agentkey-build \
    python manage.py collectstatic --noinput -v 0 \
    && test ! -e /tmp/agentkey-build

# --- runtime -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="AgentKey" \
      org.opencontainers.image.description="Self-hosted credential broker for AI agents" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 agentkey \
    && useradd --system --uid 10001 --gid agentkey --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin agentkey

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# var/ is the only writable place (celery beat's schedule); the code and static files stay root-owned.
RUN install -d -o agentkey -g agentkey -m 0750 /app/var

# PYTHONPATH puts the application tree first, so BASE_DIR resolves to /app (templates/, static/).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=agentkey.settings.production \
    AGENTKEY_STATIC_ROOT=/app/static \
    AGENTKEY_VAR_DIR=/app/var \
    WEB_CONCURRENCY=4

WORKDIR /app
USER agentkey:agentkey
EXPOSE 8000

# /healthz answers 200 after a database round trip. The Host header must be one Django accepts,
# so the probe uses the first ALLOWED_HOSTS entry (a leading-dot wildcard loses its dot).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; h = (os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.') or 'localhost').replace('*', 'localhost'); r = u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# Workers from WEB_CONCURRENCY; FORWARDED_ALLOW_IPS names the proxy allowed to set X-Forwarded-*.
CMD ["gunicorn", "agentkey.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-", "--logger-class", "agentkey.core.accesslog.AccessLogger", "--timeout", "30", "--graceful-timeout", "30"]
