"""Counting refused agent keys per client address (the auth-failures anomaly rule).

On the 401/403 path only cache operations run: an INCR per refusal on a fixed window per
address. The refusal that reaches the threshold is written down (once per address and
window) for the anomaly job (``grants.anomalies``), which raises the alert; ``accounts`` sits
below ``grants`` and cannot raise it itself. If the cache is unreachable the refusal is not
counted and the 401/403 is answered as always (fail open for counting only).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.exceptions
from django.conf import settings
from django.core.cache import cache

from accounts import keys
from accounts.models import Agent, AgentKey
from accounts.services import agent_authenticate
from agentkey.core import context
from agentkey.core.errors import Unauthenticated

logger = logging.getLogger("agentkey.anomalies")

#: Windows the job looks back over, so a job that ran late still sees a crossing.
WINDOWS_KEPT = 3


@dataclass(frozen=True)
class Crossing:
    address: str
    window_start: datetime
    count: int
    agent_id: uuid.UUID | None


def _window(now: float) -> int:
    size = settings.AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS
    return int(now) // size * size


def _incr(key: str, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    return int(cache.incr(key))


def auth_failure_note(*, token: str) -> None:
    """Count one refused key from the request's client address; never raises."""
    address = context.current().ip
    if not address:
        return
    threshold = settings.AGENTKEY_ANOMALY_AUTH_FAILURES
    size = settings.AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS
    start = _window(time.time())
    timeout = size * (WINDOWS_KEPT + 1)
    try:
        count = _incr(f"anomaly:authfail:{start}:{address}", timeout)
        if count != threshold:
            return
        # The key's owner, if the key is one of ours (rotated out, expired, suspended agent):
        # one indexed lookup, once per address and window.
        agent_id = (
            AgentKey.objects.filter(key_hash=keys.digest(token)).values_list("agent_id", flat=True).first()
        )
        n = _incr(f"anomaly:authburst:{start}", timeout)
        record = {"address": address, "count": count, "agent_id": str(agent_id) if agent_id else None}
        cache.set(f"anomaly:authburst:{start}:{n}", record, timeout=timeout)
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        logger.warning("refused key not counted (cache unavailable): %s", type(exc).__name__)


def agent_authenticate_counted(*, token: str) -> tuple[Agent, AgentKey]:
    """:func:`accounts.services.agent_authenticate`, counting refusals for the anomaly rule."""
    try:
        return agent_authenticate(token=token)
    except Unauthenticated:
        # Only keys that are refused count. A suspended or expired agent's own key (403) is
        # audited once a minute by agent_authenticate; counting it would raise a new alert
        # every window for as long as a suspended agent keeps retrying.
        auth_failure_note(token=token)
        raise


def crossings(*, now: datetime) -> Iterator[Crossing]:
    """Addresses that reached the threshold in the last few windows (for the anomaly job)."""
    size = settings.AGENTKEY_ANOMALY_AUTH_WINDOW_SECONDS
    current = _window(now.timestamp())
    for start in range(current - size * (WINDOWS_KEPT - 1), current + size, size):
        try:
            total = int(cache.get(f"anomaly:authburst:{start}") or 0)
            records: dict[str, Any] = cache.get_many(
                [f"anomaly:authburst:{start}:{n}" for n in range(1, total + 1)]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.warning("refused-key crossings not read (cache unavailable): %s", type(exc).__name__)
            return
        for record in records.values():
            agent_id = record.get("agent_id")
            yield Crossing(
                address=str(record["address"]),
                window_start=datetime.fromtimestamp(start, tz=UTC),
                count=int(record["count"]),
                agent_id=uuid.UUID(agent_id) if agent_id else None,
            )
