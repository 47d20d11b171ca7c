"""The console pages: start a draft, watch it stream (SSE), apply or discard it; roles and strangers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from agentkey.core import streams
from audit.models import Action
from catalog.drafts import generation
from catalog.models import DraftStatus, GuideDraft, Tool
from catalog.views import drafts as views
from tests import factories
from tests.catalog.drafts.support import GITHUB_PAGE, GUIDE_CHUNKS, parse_sse
from tests.console.tools.support import console_for

DOCS_URL = "https://93.184.216.34/docs/authentication"


@pytest.fixture(autouse=True)
def _short_streams(monkeypatch):
    # A broken test should fail in seconds, not hang on a two-minute stream.
    monkeypatch.setattr(views, "STREAM_SECONDS", 15.0)
    monkeypatch.setattr(views, "IDLE_MS", 500)


def finished(org, tool=None, **fields) -> GuideDraft:
    values = {
        "org": org,
        "tool": tool,
        "source_url": DOCS_URL,
        "model": "offline",
        "status": DraftStatus.DONE,
        "content": "## Base URL\n\n- `https://api.example.com/v1`\n",
        "started_at": timezone.now(),
        "finished_at": timezone.now(),
    }
    values.update(fields)
    return GuideDraft.objects.create(**values)


def url(name: str, draft: GuideDraft) -> str:
    return reverse(f"console:{name}", kwargs={"draft_id": draft.id})


def sse(client: Client, draft: GuideDraft, **headers: Any) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    response = client.get(url("draft_stream", draft), **headers)
    assert response.status_code == 200
    return response, parse_sse(b"".join(response.streaming_content))  # type: ignore[attr-defined]


# --- starting --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_start_page_is_prefilled_from_the_tool(admin_member, tool):
    page = console_for(admin_member).get(reverse("console:draft_create") + f"?tool={tool.id}")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="https://linear.app/"' in html
    assert f'value="{tool.id}"' in html


@pytest.mark.django_db
def test_a_refused_url_is_shown_on_the_form(admin_member, tool):
    response = console_for(admin_member).post(
        reverse("console:draft_create"),
        {"source_url": "http://169.254.169.254/latest/meta-data/", "tool": tool.id},
    )

    assert response.status_code == 400
    assert "a cloud metadata address; AgentKey only calls public addresses." in response.content.decode()
    assert not GuideDraft.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["approver", "auditor"])
def test_approvers_and_auditors_get_403_on_every_change(org, tool, role, request):
    client = console_for(request.getfixturevalue(role))
    draft = finished(org, tool)

    assert client.get(reverse("console:draft_create")).status_code == 403
    assert client.post(reverse("console:draft_create"), {"source_url": DOCS_URL}).status_code == 403
    assert client.post(url("draft_apply", draft), {"content": "x"}).status_code == 403
    assert client.post(url("draft_discard", draft)).status_code == 403
    assert GuideDraft.objects.get(pk=draft.pk).applied_version is None


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["approver", "auditor"])
def test_approvers_and_auditors_may_read_a_draft_without_its_buttons(org, tool, role, request):
    client = console_for(request.getfixturevalue(role))
    draft = finished(org, tool)

    html = client.get(url("draft", draft)).content.decode()

    assert "https://api.example.com/v1" in html
    assert "Apply as the usage guide" not in html
    assert "Discard the draft" not in html
    assert sse(client, draft)[1][-1][0] == "done"


@pytest.mark.django_db
def test_another_organizations_draft_and_its_stream_are_404(org, tool, other_org):
    draft = finished(org, tool)
    outsider = console_for(factories.make_member(other_org, Role.OWNER))

    assert outsider.get(url("draft", draft)).status_code == 404
    assert outsider.get(url("draft_stream", draft)).status_code == 404
    assert outsider.post(url("draft_apply", draft), {"content": "x"}).status_code == 404
    assert outsider.post(url("draft_discard", draft)).status_code == 404
    assert GuideDraft.objects.filter(pk=draft.pk, applied_version=None).exists()


@pytest.mark.django_db
def test_anonymous_people_are_sent_to_sign_in(org, tool):
    response = Client().get(url("draft_stream", finished(org, tool)))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- the stream ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_stream_is_server_sent_events_that_nothing_buffers(admin_member, org, tool):
    response, _ = sse(console_for(admin_member), finished(org, tool))

    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"


@pytest.mark.django_db
def test_a_finished_draft_whose_stream_expired_is_told_from_the_database(admin_member, org, tool):
    draft = finished(org, tool)

    _, events = sse(console_for(admin_member), draft)

    assert [e for e, _ in events] == ["meta", "delta", "done"]
    assert events[0][1]["model"] == "offline"
    assert events[0][1]["source_url"] == DOCS_URL
    assert events[1][1] == {"text": draft.content}
    assert events[2][1] == {"draft_id": str(draft.id), "length": len(draft.content)}


@pytest.mark.django_db
def test_the_stream_replays_the_published_events_and_resumes_after_last_event_id(admin_member, org, tool):
    draft = finished(org, tool, content="Hello world")
    name = generation.stream_name(draft.id)
    streams.publish(name, "meta", {"model": "offline", "source_url": DOCS_URL, "started": "x"})
    first = streams.publish(name, "delta", {"text": "Hello "})
    streams.publish(name, "delta", {"text": "world"})
    streams.publish(name, "done", {"draft_id": str(draft.id), "length": 11})
    client = console_for(admin_member)

    _, everything = sse(client, draft)
    _, resumed = sse(client, draft, HTTP_LAST_EVENT_ID=first)

    assert [e for e, _ in everything] == ["meta", "delta", "delta", "done"]
    assert resumed == [("delta", {"text": "world"}), ("done", {"draft_id": str(draft.id), "length": 11})]


@pytest.mark.django_db
def test_a_failed_draft_streams_its_error(admin_member, org, tool):
    draft = finished(org, tool, status=DraftStatus.FAILED, content="", error="The page has too little text.")

    _, events = sse(console_for(admin_member), draft)

    assert events[-1] == ("error", {"message": "The page has too little text."})
    assert "delta" not in [e for e, _ in events]


@pytest.mark.django_db
def test_a_draft_discarded_while_followed_ends_the_stream(admin_member, org, tool):
    draft = finished(org, tool, status=DraftStatus.RUNNING, content="", finished_at=None)
    response = console_for(admin_member).get(url("draft_stream", draft))  # the body is produced lazily
    GuideDraft.objects.filter(pk=draft.pk).delete()

    events = parse_sse(b"".join(response.streaming_content))  # type: ignore[attr-defined]

    assert events == [("error", {"message": "This draft was discarded."})]


# --- the whole journey, with the task in the background ----------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["redis", "memory"])
def test_start_watch_and_apply_a_model_written_draft(store, settings, docs, llm_drafts, audit_log):
    if store == "memory":
        settings.REDIS_URL = ""  # the embedded default: one process, in-memory streams
    org = factories.make_org("Acme")
    admin = factories.make_member(org, Role.ADMIN)
    tool = factories.make_tool(org, "GitHub", url="https://github.com", usage_guide="Old guide.")
    client = console_for(admin)
    llm_drafts.delay = 0.15

    began = time.monotonic()
    response = client.post(
        reverse("console:draft_create"), {"source_url": docs.page(GITHUB_PAGE), "tool": tool.id}
    )
    elapsed = time.monotonic() - began

    assert response.status_code == 302
    draft = GuideDraft.objects.get(tool=tool)
    assert response["Location"] == url("draft", draft)
    assert elapsed < 1.0  # the model takes 1.5 s: it is not running inside the request
    assert GuideDraft.objects.get(pk=draft.pk).status in (DraftStatus.PENDING, DraftStatus.RUNNING)
    page = client.get(url("draft", draft)).content.decode()
    assert "data-draft-stream" in page
    assert "drafts.js" in page

    _, events = sse(client, draft)

    assert events[0][0] == "meta"
    assert [d["text"] for e, d in events if e == "delta"] == GUIDE_CHUNKS
    assert events[-1] == ("done", {"draft_id": str(draft.id), "length": len("".join(GUIDE_CHUNKS).strip())})
    draft.refresh_from_db()
    assert draft.status == DraftStatus.DONE
    review = client.get(url("draft", draft)).content.decode()
    assert "Apply as the usage guide" in review
    assert "test-model-1" in review
    assert docs.page(GITHUB_PAGE) in review

    applied = client.post(
        url("draft_apply", draft), {"content": draft.content + "\nReviewed.", "base_version": 1}
    )

    assert applied.status_code == 302
    assert applied["Location"] == reverse("console:tool_guide", kwargs={"tool_id": tool.id})
    tool = Tool.objects.get(pk=tool.pk)
    assert tool.usage_guide == draft.content + "\nReviewed."
    assert tool.current_guide_version == 2
    assert [
        a for a in audit_log.actions() if a.startswith("guide_draft") or a == Action.TOOL_GUIDE_UPDATED
    ] == [
        Action.GUIDE_DRAFT_STARTED,
        Action.GUIDE_DRAFT_COMPLETED,
        Action.TOOL_GUIDE_UPDATED,
        Action.GUIDE_DRAFT_APPLIED,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_model_error_reaches_the_browser_as_an_error_event(docs, llm_drafts):
    org = factories.make_org("Acme")
    admin = factories.make_member(org, Role.ADMIN)
    tool = factories.make_tool(org, "GitHub")
    llm_drafts.status = 500
    client = console_for(admin)

    client.post(reverse("console:draft_create"), {"source_url": docs.page(GITHUB_PAGE), "tool": tool.id})
    draft = GuideDraft.objects.get(tool=tool)
    _, events = sse(client, draft)

    assert events[-1][0] == "error"
    assert events[-1][1]["message"].startswith("The language model answered HTTP 500.")
    draft.refresh_from_db()
    assert (draft.status, draft.content) == (DraftStatus.FAILED, "")
    assert "The language model answered HTTP 500." in client.get(url("draft", draft)).content.decode()


# --- apply and discard through the pages --------------------------------------------------------------


@pytest.mark.django_db
def test_a_stale_editor_is_told_the_guide_changed(admin_member, org, tool):
    from catalog.services import tool_guide_update

    draft = finished(org, tool)
    tool_guide_update(tool=tool, actor=admin_member, content="Newer.")

    response = console_for(admin_member).post(
        url("draft_apply", draft), {"content": "Mine.", "base_version": 1}
    )

    assert response.status_code == 409
    assert "changed since you opened it" in response.content.decode()
    assert "Mine." in response.content.decode()  # the admin's text is still on the page
    assert Tool.objects.get(pk=tool.pk).usage_guide == "Newer."


@pytest.mark.django_db
def test_discarding_from_the_page(admin_member, org, tool, audit_log):
    draft = finished(org, tool)

    response = console_for(admin_member).post(url("draft_discard", draft))

    assert response.status_code == 302
    assert not GuideDraft.objects.filter(pk=draft.pk).exists()
    assert audit_log.actions() == [Action.GUIDE_DRAFT_DISCARDED]


@pytest.mark.django_db
def test_a_stuck_draft_says_so(admin_member, org, tool):
    draft = finished(
        org,
        tool,
        status=DraftStatus.RUNNING,
        content="",
        finished_at=None,
        started_at=timezone.now() - generation.STALE_AFTER * 2,
    )

    assert (
        "its worker may have stopped" in console_for(admin_member).get(url("draft", draft)).content.decode()
    )


# --- entry points and the new-tool form ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_tool_and_guide_pages_offer_a_draft_to_tool_managers_only(admin_member, approver, tool):
    link = f"/drafts/new?tool={tool.id}"
    for page in ("tool", "tool_guide"):
        target = reverse(f"console:{page}", kwargs={"tool_id": tool.id})
        assert link in console_for(admin_member).get(target).content.decode()
        assert link not in console_for(approver).get(target).content.decode()


@pytest.mark.django_db
def test_a_finished_draft_prefills_the_new_tool_form_with_its_provenance(admin_member, org, agent):
    from catalog.services import tool_suggest

    suggestion = tool_suggest(agent=agent, name="Notion", url="https://notion.so", reason="Docs.").suggestion
    draft = finished(org, suggestion=suggestion, model="test-model-1")
    client = console_for(admin_member)

    review = client.get(url("draft", draft)).content.decode()
    prefill = f"/tools/new?draft={draft.id}&amp;suggestion={suggestion.id}"
    assert prefill in review

    form = client.get(f"/tools/new?draft={draft.id}&suggestion={suggestion.id}").content.decode()
    assert "https://api.example.com/v1" in form.split('name="usage_guide"', 1)[1].split("</textarea>", 1)[0]
    assert "prefilled from an AI draft" in form
    assert DOCS_URL in form
    assert "test-model-1" in form


@pytest.mark.django_db
def test_the_new_tool_form_links_to_drafting_from_docs(admin_member):
    assert "/drafts/new" in console_for(admin_member).get("/tools/new").content.decode()


@pytest.mark.django_db
def test_only_this_organizations_finished_drafts_prefill_the_form(admin_member, org, other_org):
    client = console_for(admin_member)
    theirs = finished(other_org)
    unfinished = finished(org, status=DraftStatus.RUNNING, content="", finished_at=None)

    assert client.get(f"/tools/new?draft={theirs.id}").status_code == 404
    assert client.get(f"/tools/new?draft={unfinished.id}").status_code == 404
    assert client.get("/tools/new?draft=not-a-uuid").status_code == 404
