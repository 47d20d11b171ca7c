"""Streaming chat completions from an OpenAI-compatible endpoint.

The endpoint is configured by the operator (``AGENTKEY_LLM_BASE_URL``) and is
trusted, so it is called with ``requests`` rather than the SSRF-safe client
(it is often a model server on the local network). What is *not* trusted is its
answer: it is streamed text for a human to review, never executed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from catalog.drafts.errors import (
    MODEL_BROKE_OFF,
    MODEL_MALFORMED,
    MODEL_REPORTED,
    MODEL_STATUS,
    MODEL_TIMED_OUT,
    MODEL_UNREACHABLE,
    DraftFailed,
)


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str
    connect_timeout: float
    read_timeout: float
    deadline_seconds: float

    def __repr__(self) -> str:  # the API key never appears in a repr, a log line or a traceback
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r})"


def _chunks(event: dict[str, Any]) -> tuple[list[str], bool]:
    """The text deltas of one streamed event, and whether it finished the answer."""
    if not isinstance(event, dict):
        raise DraftFailed(MODEL_MALFORMED)
    if event.get("error"):
        raise DraftFailed(MODEL_REPORTED)
    texts, finished = [], False
    choices = event.get("choices") or []
    if not isinstance(choices, list):
        raise DraftFailed(MODEL_MALFORMED)
    for choice in choices:
        if not isinstance(choice, dict):
            raise DraftFailed(MODEL_MALFORMED)
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            texts.append(content)
        if choice.get("finish_reason"):
            finished = True
    return texts, finished


def _answer(response: requests.Response, deadline: float, seconds: float) -> Iterator[str]:
    """The text of a streamed answer; a stream that ends before ``[DONE]`` or a finish reason is broken."""
    for raw in response.iter_lines(chunk_size=256):
        if time.monotonic() > deadline:
            raise DraftFailed(MODEL_TIMED_OUT.format(seconds=int(seconds)))
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, event:/id: fields
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            raise DraftFailed(MODEL_MALFORMED) from None
        texts, finished = _chunks(event)
        yield from texts
        if finished:
            return
    raise DraftFailed(MODEL_BROKE_OFF)


def stream_chat(endpoint: Endpoint, messages: list[dict[str, str]]) -> Iterator[str]:
    """Yield the answer's text as it arrives. Raises DraftFailed on any failure, including a
    stream that breaks off before its end (a broken stream is not an answer)."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    body = {"model": endpoint.model, "stream": True, "temperature": 0.2, "messages": messages}
    deadline = time.monotonic() + endpoint.deadline_seconds
    received = False
    try:
        with requests.post(
            f"{endpoint.base_url}/chat/completions",
            json=body,
            headers=headers,
            stream=True,
            timeout=(endpoint.connect_timeout, endpoint.read_timeout),
            allow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise DraftFailed(MODEL_STATUS.format(status=response.status_code))
            received = True
            yield from _answer(response, deadline, endpoint.deadline_seconds)
    except requests.Timeout:
        raise DraftFailed(MODEL_TIMED_OUT.format(seconds=int(endpoint.read_timeout))) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        raise DraftFailed(MODEL_BROKE_OFF) from None
    except requests.ConnectionError as exc:
        if received:
            raise DraftFailed(MODEL_BROKE_OFF) from None
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise DraftFailed(MODEL_UNREACHABLE.format(reason=reason)) from None
    except requests.RequestException as exc:
        raise DraftFailed(MODEL_UNREACHABLE.format(reason=type(exc).__name__)) from None
