"""Short-lived event streams that one process writes and web requests replay and follow (SSE).

A writer (a Celery task) appends events with :func:`publish`; a reader (a
server-sent-events view) calls :func:`follow` with the id of the last event it
has seen and gets everything after it, waiting up to ``block_ms`` for more. So a
browser that connects late, or reconnects with ``Last-Event-ID``, replays from
where it was and never misses a chunk.

With ``REDIS_URL`` configured the streams are Redis Streams (``XADD`` with
``MAXLEN`` and an ``EXPIRE``, read with ``XREAD BLOCK``), shared by every web
and worker process. Without Redis (the embedded default: one process, tasks run
in threads) an in-process store with a condition variable does the same job.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from django.conf import settings

# Events after which a stream has nothing more to say.
TERMINAL = frozenset({"done", "error"})
START = "0-0"
KEY_PREFIX = "agentkey:stream:"
# A stream is a replay buffer for one generation, not an archive: the database keeps the result.
MAX_EVENTS = 20_000
TTL_SECONDS = 3600
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


class StreamUnavailable(Exception):
    """The stream store cannot be reached (Redis down): readers fall back to the database."""


@dataclass(frozen=True)
class StreamEvent:
    id: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL

    def sse(self) -> bytes:
        """The event in the text/event-stream wire format (one ``data:`` line: JSON has no raw newlines)."""
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.event}\ndata: {payload}\n\n".encode()


def valid_event_id(value: str) -> bool:
    """Whether ``value`` (a client's ``Last-Event-ID``) is an id this module could have issued."""
    return bool(_EVENT_ID.match(value))


class Backend(Protocol):
    def publish(self, stream: str, event: str, data: dict[str, Any]) -> str: ...

    def follow(self, stream: str, last_id: str, block_ms: int) -> list[StreamEvent]: ...

    def delete(self, stream: str) -> None: ...


class RedisStreams:
    """Redis Streams: every process sees every event; old streams expire on their own."""

    def __init__(self, url: str) -> None:
        # The read timeout must outlast the longest XREAD BLOCK (capped at 15 s below).
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=30)

    def publish(self, stream: str, event: str, data: dict[str, Any]) -> str:
        key = KEY_PREFIX + stream
        fields = {"event": event, "data": json.dumps(data, ensure_ascii=False)}
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(key, fields, maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, TTL_SECONDS)
            event_id, _ = pipe.execute()
        except redis.RedisError as exc:
            raise StreamUnavailable(type(exc).__name__) from None
        return _text(event_id)

    def follow(self, stream: str, last_id: str, block_ms: int) -> list[StreamEvent]:
        key = KEY_PREFIX + stream
        try:
            # BLOCK 0 would wait forever; a reader always has a deadline.
            answer: Any = self.client.xread({key: last_id}, count=500, block=max(1, min(block_ms, 15_000)))
        except redis.RedisError as exc:
            raise StreamUnavailable(type(exc).__name__) from None
        events = []
        for _key, entries in answer or []:
            for event_id, fields in entries:
                decoded = {_text(k): _text(v) for k, v in fields.items()}
                events.append(
                    StreamEvent(
                        id=_text(event_id),
                        event=decoded.get("event", "message"),
                        data=json.loads(decoded.get("data", "{}")),
                    )
                )
        return events

    def delete(self, stream: str) -> None:
        try:
            self.client.delete(KEY_PREFIX + stream)
        except redis.RedisError as exc:
            raise StreamUnavailable(type(exc).__name__) from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Buffer:
    events: list[StreamEvent] = field(default_factory=list)
    next_seq: int = 1
    expires: float = 0.0


class MemoryStreams:
    """The same contract inside one process (the embedded default has no Redis)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._streams: dict[str, _Buffer] = {}

    def publish(self, stream: str, event: str, data: dict[str, Any]) -> str:
        now = time.monotonic()
        with self._changed:
            self._expire(now)
            buffer = self._streams.setdefault(stream, _Buffer())
            item = StreamEvent(id=f"{buffer.next_seq}-0", event=event, data=dict(data))
            buffer.next_seq += 1
            buffer.events.append(item)
            if len(buffer.events) > MAX_EVENTS:
                del buffer.events[: len(buffer.events) - MAX_EVENTS]
            buffer.expires = now + TTL_SECONDS
            self._changed.notify_all()
        return item.id

    def follow(self, stream: str, last_id: str, block_ms: int) -> list[StreamEvent]:
        after = int(last_id.split("-", 1)[0]) if valid_event_id(last_id) else 0
        deadline = time.monotonic() + max(block_ms, 1) / 1000
        with self._changed:
            while True:
                found = self._after(stream, after)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def delete(self, stream: str) -> None:
        with self._changed:
            self._streams.pop(stream, None)

    def _after(self, stream: str, after: int) -> list[StreamEvent]:
        buffer = self._streams.get(stream)
        if buffer is None:
            return []
        return [e for e in buffer.events if int(e.id.split("-", 1)[0]) > after]

    def _expire(self, now: float) -> None:
        for name in [n for n, b in self._streams.items() if b.expires < now]:
            del self._streams[name]


_MEMORY = MemoryStreams()


@functools.lru_cache(maxsize=4)
def _redis(url: str) -> RedisStreams:
    return RedisStreams(url)


def backend() -> Backend:
    url = getattr(settings, "REDIS_URL", "")
    return _redis(url) if url else _MEMORY


def publish(stream: str, event: str, data: dict[str, Any]) -> str:
    """Append one event; returns its id. Raises StreamUnavailable when the store is down."""
    return backend().publish(stream, event, data)


def follow(stream: str, last_id: str = START, block_ms: int = 5000) -> list[StreamEvent]:
    """Events after ``last_id``, waiting up to ``block_ms`` for the first one; [] when none came."""
    return backend().follow(stream, last_id if valid_event_id(last_id) else START, block_ms)


def delete(stream: str) -> None:
    backend().delete(stream)
