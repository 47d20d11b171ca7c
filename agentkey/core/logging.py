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


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so handlers never format the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
