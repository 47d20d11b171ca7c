"""Strict JSON parsing for the agent API.

Kept apart from ``agentkey.core.api``: DRF imports parser classes while it
defines APIView, so this module must not import DRF's views.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from agentkey.core import errors
from agentkey.core.errors import Message

LONE_SURROGATE = Message(
    "The request body contains text that is not valid Unicode.",
    "Remove unpaired surrogate escapes (\\ud800-\\udfff) from the strings and send the request again.",
)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _check_text(value: Any) -> None:
    """Refuse strings PostgreSQL cannot store: lone surrogates (NUL is refused by CharField)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.ValidationFailed(LONE_SURROGATE) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


class StrictJSONParser(BaseParser):
    """JSON objects only, capped in size, no NaN/Infinity, valid UTF-8 throughout."""

    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # DRF matches a parser to "Content-Type: */*" or "application/*" as a wildcard; only JSON is JSON.
        if (media_type or "").split(";", 1)[0].strip().lower() != self.media_type:
            raise errors.UnsupportedMediaType(errors.UNSUPPORTED_MEDIA_TYPE)
        limit: int = settings.AGENTKEY_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise errors.PayloadTooLarge(errors.PAYLOAD_TOO_LARGE.format(limit=limit), limit=limit)
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise errors.ValidationFailed(errors.MALFORMED_JSON) from None
        if not isinstance(data, dict):
            raise errors.ValidationFailed(errors.NOT_A_JSON_OBJECT)
        _check_text(data)
        return data
