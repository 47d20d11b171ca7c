"""Identifiers."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562, version 7).

    Primary keys generated in time order keep B-tree inserts on the right-hand
    edge of the index, which matters for tables that grow with every request.
    The 12 ``rand_a`` bits carry the sub-millisecond fraction of the clock
    (RFC 9562 §6.2, method 3), so ids from one process sort in creation order
    to ~250 ns; the remaining 62 bits are random.
    """
    ns = time.time_ns()
    ms, sub_ms = divmod(ns, 1_000_000)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((sub_ms * 4096) // 1_000_000) << 64  # rand_a: sub-millisecond precision
    value |= 0b10 << 62  # variant
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)  # rand_b
    return uuid.UUID(int=value)
