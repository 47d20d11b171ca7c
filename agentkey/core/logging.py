"""Keep secrets out of logs even when a message or exception carries one by mistake."""

from __future__ import annotations

import logging
import re

# Agent keys, and anything that looks like a bearer credential in a header dump.
_PATTERNS = [
    re.compile(r"sk_agent_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[^\s\"',}]+"),
]
# Stored tool credentials have no format of their own, but most providers' do: a
# value of a well-known shape, or one labelled as a secret, is masked wherever it
# appears. The session-wide secret watch (tests/support/secret_watch.py) covers
# the rest by value: nothing is allowed to log a credential in the first place.
_CREDENTIAL_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
    r"|\bxox[abpors]-[A-Za-z0-9-]{10,}"
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|\b(?:lin|glpat|npm|pypi)[-_][A-Za-z0-9_-]{16,}"
)
_LABELLED = re.compile(
    r"(?i)([\"']?(?:password|passwd|secret|api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|credential)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',}&]{4,})"
)


def redact(text: str) -> str:
    text = _PATTERNS[0].sub("sk_agent_[REDACTED]", text)
    text = _PATTERNS[1].sub(r"\1[REDACTED]", text)
    text = _CREDENTIAL_SHAPES.sub("[REDACTED]", text)
    return _LABELLED.sub(r"\1[REDACTED]", text)


def _safe_arg(arg: object) -> object:
    """A path ("Not Found: %s") or a request line (runserver's '"GET /path HTTP/1.1" 404'), sanitized."""
    if not isinstance(arg, str):
        return arg
    if arg.startswith("/"):
        return safe_path(arg)
    method, _, rest = arg.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    if method.isalpha() and method.isupper() and target.startswith("/") and protocol.startswith("HTTP/"):
        return f"{method} {safe_path(target)} {protocol}"
    return arg


# Django's loggers that put the request path into the message ("Not Found: %s").
_PATH_LOGGERS = frozenset({"django.request", "django.server", "django.security.csrf"})


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in _PATH_LOGGERS and isinstance(record.args, tuple):
            record.args = tuple(_safe_arg(arg) for arg in record.args)
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so handlers never format the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# --- request paths ---------------------------------------------------------------------------------
#
# A client may put anything in a URL, a credential of no known shape included
# (`/api/tools/<the credential>/credentials`). Paths are logged by gunicorn's access
# log and by Django's "Not Found: <path>" warnings, so both log a sanitized path:
# segments that can only be our own route words, UUIDs or small integers are kept,
# anything else becomes "…", and every query value is dropped.
_UUID_SEGMENT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT_SEGMENT = re.compile(r"[0-9]{1,10}")
# Route words: short lowercase words ("credentials", "2fa"), or hyphenated ones made of
# short parts ("oauth-protected-resource"); they carry at most one short run of digits.
_WORD_SEGMENT = re.compile(
    r"\.?[a-z0-9][a-z0-9._]{0,19}|\.?[a-z0-9][a-z0-9._]{0,11}(?:-[a-z0-9._]{1,12}){1,4}"
)
_RANDOM_LOOKING = re.compile(r"[0-9a-f]{12,}|[0-9]{4,}|[0-9][^0-9]+[0-9]")
MASK = "…"


def _safe_segment(segment: str) -> str:
    if not segment or _UUID_SEGMENT.fullmatch(segment) or _INT_SEGMENT.fullmatch(segment):
        return segment
    if (
        _WORD_SEGMENT.fullmatch(segment)
        and not _RANDOM_LOOKING.search(segment)
        and redact(segment) == segment
    ):
        return segment
    return MASK


def safe_path(path: str) -> str:
    """``path`` (with an optional query) as it may be logged: route words, ids and keys only."""
    path, _, query = path.partition("?")
    shown = "/".join(_safe_segment(segment) for segment in path.split("/"))
    if query:
        names = [_safe_segment(pair.partition("=")[0]) for pair in query.split("&") if pair]
        shown += "?" + "&".join(f"{name}={MASK}" for name in names)
    return shown


def safe_url(url: str) -> str:
    """A referer-like URL with its path and query sanitized; scheme and host kept."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return safe_path(url) if url.startswith("/") else MASK
    host, slash, path = rest.partition("/")
    return f"{scheme}://{redact(host.rpartition('@')[2])}" + (safe_path("/" + path) if slash else "")
