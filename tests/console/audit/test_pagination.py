"""Keyset pagination: Older and Newest links walk the whole log, no gaps, no duplicates."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from audit.models import Action
from tests import factories
from tests.console.audit.conftest import console_for, org_ids, shown_ids

pytestmark = pytest.mark.django_db

OLDER = re.compile(r'<a class="button small" rel="next" href="([^"]+)"')
NEWEST = re.compile(r'<a class="button small" href="([^"]+)"[^>]*>« Newest</a>')


@pytest.fixture
def busy(org, tool, agent, record, settings) -> None:
    settings.AGENTKEY_AUDIT_PAGE_SIZE = 7
    other = factories.make_agent(org, "Second-Agent").agent
    for n in range(120):
        record(Action.CREDENTIAL_VENDED, agent if n % 3 else other, tool, n=n)


def link(pattern: re.Pattern[str], page: str) -> str:
    found = pattern.search(page)
    assert found is not None, pattern.pattern
    return html.unescape(found.group(1))


def walk(client: Any, url: str) -> tuple[list[int], list[str]]:
    """Follow Older links from ``url`` to the end; the ids seen and the pages visited."""
    seen: list[int] = []
    visited = []
    while url:
        visited.append(url)
        response = client.get(url)
        ids = shown_ids(response)
        assert 0 < len(ids) <= 7
        seen += ids
        found = OLDER.search(response.content.decode())
        url = html.unescape(found.group(1)) if found else ""
        assert len(visited) < 100
    return seen, visited


def test_older_links_walk_the_whole_log_exactly_once(org, auditor, busy):
    seen, visited = walk(console_for(auditor), "/audit/")
    expected = org_ids(org)
    assert len(expected) > 120
    assert seen == expected, "newest first, no gap, no duplicate"
    assert len(visited) == -(-len(expected) // 7)
    assert all("before=" in url for url in visited[1:])


def test_a_filtered_walk_keeps_its_filter(org, auditor, agent, busy):
    seen, visited = walk(console_for(auditor), f"/audit/?agent={agent.id}&action=credential.vended")
    assert seen == org_ids(org, agent_id=agent.id, action="credential.vended")
    assert len(seen) == 80
    assert all(f"agent={agent.id}" in url and "action=credential.vended" in url for url in visited)


def test_events_written_while_paging_do_not_shift_the_pages(org, auditor, agent, tool, busy, record):
    client = console_for(auditor)
    first = client.get("/audit/")
    older = link(OLDER, first.content.decode())
    for _ in range(5):
        record(Action.CREDENTIAL_VENDED, agent, tool)
    second = shown_ids(client.get(older))
    assert second == org_ids(org)[12:19], "the next page starts right after the last row seen"
    assert not set(second) & set(shown_ids(first))


def test_an_older_page_links_back_to_the_newest(org, auditor, agent, busy):
    client = console_for(auditor)
    first = client.get(f"/audit/?agent={agent.id}").content.decode()
    assert NEWEST.search(first) is None, "the first page is the newest"
    older = client.get(link(OLDER, first)).content.decode()
    newest = link(NEWEST, older)
    assert newest == f"/audit/?agent={agent.id}"


def test_the_last_page_has_no_older_link(org, auditor, busy):
    oldest = org_ids(org)[-1]
    response = console_for(auditor).get(f"/audit/?before={oldest + 1}")
    assert shown_ids(response) == [oldest]
    assert OLDER.search(response.content.decode()) is None
    assert shown_ids(console_for(auditor).get(f"/audit/?before={oldest}")) == []


@pytest.mark.parametrize(
    "cursor", ["abc", "-5", "1e9", "0", "٣", "9999999999999999999", "99999999999999999999999"]
)
def test_a_malformed_cursor_means_the_newest_page(org, auditor, busy, cursor):
    assert shown_ids(console_for(auditor).get(f"/audit/?before={cursor}")) == org_ids(org)[:7]
