"""Keep secrets out of logs even when a message or exception carries one by mistake."""

from __future__ import annotations

import logging
import re

# Agent keys, and anything that looks like a bearer credential in a header dump.
_PATTERNS = [
    re.compile(r"sk_agent_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?bearer\s+)[^\s\"',}]+"),
]


def redact(text: str) -> str:
    text = _PATTERNS[0].sub("sk_agent_[REDACTED]", text)
    return _PATTERNS[1].sub(r"\1[REDACTED]", text)


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
