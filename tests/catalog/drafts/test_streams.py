"""agentkey.core.streams: publish, replay from any point, follow with a deadline — on Redis and in memory."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from agentkey.core import streams


@pytest.fixture(params=["redis", "memory"])
def backend(request, settings):
    if request.param == "redis":
        return streams.RedisStreams(settings.REDIS_URL)
    return streams.MemoryStreams()


def name() -> str:
    return f"test:{uuid.uuid4()}"


def test_a_reader_that_arrives_late_replays_everything_in_order(backend):
    stream = name()
    backend.publish(stream, "meta", {"model": "m"})
    backend.publish(stream, "delta", {"text": "Hello "})
    backend.publish(stream, "delta", {"text": "world"})
    backend.publish(stream, "done", {"length": 11})

    events = backend.follow(stream, streams.START, 100)

    assert [(e.event, e.data) for e in events] == [
        ("meta", {"model": "m"}),
        ("delta", {"text": "Hello "}),
        ("delta", {"text": "world"}),
        ("done", {"length": 11}),
    ]
    assert events[-1].terminal
    assert not events[0].terminal


def test_a_reader_resumes_after_the_last_event_it_saw(backend):
    stream = name()
    first = backend.publish(stream, "delta", {"text": "a"})
    backend.publish(stream, "delta", {"text": "b"})

    assert [e.data["text"] for e in backend.follow(stream, first, 100)] == ["b"]


def test_follow_waits_for_the_next_event_and_returns_it(backend):
    stream = name()
    timer = threading.Timer(0.2, lambda: backend.publish(stream, "delta", {"text": "late"}))
    timer.start()
    started = time.monotonic()

    events = backend.follow(stream, streams.START, 5000)

    assert [e.data for e in events] == [{"text": "late"}]
    assert time.monotonic() - started < 3


def test_follow_gives_up_after_its_deadline(backend):
    started = time.monotonic()

    assert backend.follow(name(), streams.START, 300) == []
    assert 0.2 < time.monotonic() - started < 3


def test_a_deleted_stream_replays_nothing(backend):
    stream = name()
    backend.publish(stream, "delta", {"text": "x"})
    backend.delete(stream)

    assert backend.follow(stream, streams.START, 50) == []


def test_redis_streams_expire_on_their_own(settings):
    import redis

    stream = name()
    streams.RedisStreams(settings.REDIS_URL).publish(stream, "delta", {"text": "x"})

    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(streams.KEY_PREFIX + stream)
    assert 0 < ttl <= streams.TTL_SECONDS


def test_the_module_uses_redis_when_configured_and_memory_without(settings):
    assert isinstance(streams.backend(), streams.RedisStreams)
    settings.REDIS_URL = ""
    assert isinstance(streams.backend(), streams.MemoryStreams)


def test_an_unreachable_redis_is_reported_not_crashed():
    down = streams.RedisStreams("redis://127.0.0.1:1/0")
    with pytest.raises(streams.StreamUnavailable):
        down.publish(name(), "delta", {"text": "x"})
    with pytest.raises(streams.StreamUnavailable):
        down.follow(name(), streams.START, 10)


def test_events_render_as_server_sent_events_on_one_data_line():
    event = streams.StreamEvent(id="3-0", event="delta", data={"text": "line one\nline two"})

    assert event.sse() == b'id: 3-0\nevent: delta\ndata: {"text":"line one\\nline two"}\n\n'


@pytest.mark.parametrize(
    ("value", "valid"),
    [("0-0", True), ("1700000000000-3", True), ("$", False), ("1-0\nevent: x", False), ("", False)],
)
def test_only_issued_ids_are_accepted_from_clients(value, valid):
    assert streams.valid_event_id(value) is valid
