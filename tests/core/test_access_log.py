"""What the server logs about a request path (agentkey.core.logging, agentkey.core.accesslog)."""

from __future__ import annotations

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config  # type: ignore[import-untyped]

from agentkey.core.accesslog import AccessLogger
from agentkey.core.logging import RedactSecretsFilter, safe_path, safe_url

TOOL = "0193a1b2-1234-7abc-8def-0123456789ab"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/tools/{TOOL}/credentials",
        "/api/tools/suggest",
        "/accounts/2fa/webauthn/add/",
        "/accounts/2fa/recovery-codes/generate/",
        "/members/1234/role",
        "/static/admin/css/base.css",
        "/.well-known/oauth-protected-resource",
        f"/proxy/{TOOL}/repos/octo/hello-world/issues",
        "/",
    ],
)
def test_route_words_ids_and_integers_are_logged_as_they_are(path):
    assert safe_path(path) == path


@pytest.mark.parametrize(
    "secret",
    [
        "plainlowercasetokenvalue",  # letters only, no provider shape
        "9f86d081884c7d659a2feaa0c55ad015",  # hex
        "hunter2hunter2",  # several digit runs
        "Zx81kdjQ_",  # mixed case
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "123456789012",  # a long number
        "a" * 30,  # longer than any route word
    ],
)
def test_anything_that_could_be_a_secret_is_masked_in_a_path(secret):
    shown = safe_path(f"/api/tools/{secret}/credentials")
    assert shown == "/api/tools/…/credentials"


def test_query_values_are_always_dropped():
    assert safe_path("/api/tools?q=hello&after=2") == "/api/tools?q=…&after=…"
    assert safe_path(f"/x?{'Zx81kdjQ_'}=1") == "/x?…=…"


def test_a_referer_keeps_its_host_only_plus_a_safe_path():
    assert safe_url("https://user:pw@example.com/x/Sk_9Zz?tok=1") == "https://example.com/x/…?tok=…"
    assert safe_url("garbage") == "…"


def _atoms(environ_extra: dict[str, str], path: str, query: str = "") -> dict[str, object]:
    logger = AccessLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": path + (f"?{query}" if query else ""),
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        **environ_extra,
    }
    resp = SimpleNamespace(status="404 Not Found", sent=10, headers=[("X-Secret-Echo", "nope")])
    req = SimpleNamespace(headers=[("AUTHORIZATION", "Bearer plainlowercasetokenvalue")])
    return logger.atoms(resp, req, environ, datetime.timedelta(milliseconds=3))


def test_the_access_log_shows_the_sanitized_request_line_and_no_header():
    atoms = _atoms(
        {"HTTP_REFERER": "https://x.example/a?k=v"}, "/api/tools/hunter2hunter2/credentials", "q=s"
    )
    assert atoms["r"] == "GET /api/tools/…/credentials?q=… HTTP/1.1"
    assert atoms["U"] == "/api/tools/…/credentials"
    assert atoms["q"] == "q=…"
    assert atoms["f"] == "https://x.example/a?k=…"
    assert not [name for name in atoms if name.startswith("{")], "no header or environ atom is available"
    assert "plainlowercasetokenvalue" not in repr(atoms)


def test_djangos_not_found_warning_logs_the_sanitized_path():
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Not Found: %s",
        ("/api/tools/hunter2hunter2/x",),
        None,
    )
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == "Not Found: /api/tools/…/x"


def test_the_development_servers_request_line_is_logged_sanitized():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /api/tools/hunter2hunter2/x?k=v HTTP/1.1", "404", "12"),
        None,
    )
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == '"GET /api/tools/…/x?k=… HTTP/1.1" 404 12'
