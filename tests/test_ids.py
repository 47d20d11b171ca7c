from __future__ import annotations

import uuid

from agentkey.core.ids import uuid7


def test_uuid7_has_the_rfc_9562_version_and_variant():
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_sorts_in_creation_order():
    ids = [uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
