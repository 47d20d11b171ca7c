"""Starting, applying and discarding drafts: roles, the SSRF checks, provenance, no automatic apply."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agentkey.core.errors import Conflict, Forbidden, ValidationFailed
from audit.models import Action
from catalog.drafts import services
from catalog.drafts.services import draft_apply, draft_discard, draft_start
from catalog.models import DraftStatus, GuideDraft, GuideVersion, Tool
from catalog.tasks import generate_guide_draft
from tests import factories

pytestmark = pytest.mark.django_db

DOCS_URL = "https://93.184.216.34/docs/authentication"  # a public address: no DNS needed


def finished(org, tool=None, content="## Base URL\n\n`https://api.example.com/v1`\n", **fields) -> GuideDraft:
    """A draft as the task leaves it when done (generation is tested on its own)."""
    values = {
        "org": org,
        "tool": tool,
        "source_url": DOCS_URL,
        "model": "test-model-1",
        "status": DraftStatus.DONE,
        "content": content,
        "started_at": timezone.now(),
        "finished_at": timezone.now(),
    }
    values.update(fields)
    return GuideDraft.objects.create(**values)


# --- start -----------------------------------------------------------------------------------------


def test_starting_records_the_draft_and_audits_it(org, owner, tool, audit_log, settings):
    settings.AGENTKEY_LLM_BASE_URL, settings.AGENTKEY_LLM_MODEL = "", ""

    draft = draft_start(org=org, actor=owner, source_url=f"  {DOCS_URL} ", tool=tool)

    assert draft.status == DraftStatus.PENDING
    assert draft.source_url == DOCS_URL
    assert draft.model == "offline"
    assert draft.content == ""
    assert draft.created_by == owner.user
    event = audit_log.new()[-1]
    assert event.action == Action.GUIDE_DRAFT_STARTED
    assert event.metadata == {"source_url": DOCS_URL, "model": "offline"}
    assert event.tool_id == tool.id


def test_the_configured_model_is_recorded(org, owner, settings):
    settings.AGENTKEY_LLM_BASE_URL, settings.AGENTKEY_LLM_MODEL = "http://models.internal/v1", "qwen3-32b"

    assert draft_start(org=org, actor=owner, source_url=DOCS_URL).model == "qwen3-32b"


def test_a_suggestion_can_be_the_starting_point(org, owner, agent, audit_log):
    from catalog.services import tool_suggest

    suggestion = tool_suggest(
        agent=agent, name="Notion", url="https://notion.so", reason="Docs live there."
    ).suggestion

    draft = draft_start(org=org, actor=owner, source_url=DOCS_URL, suggestion=suggestion)

    assert draft.suggestion == suggestion
    assert draft.tool is None
    assert audit_log.new()[-1].metadata["suggestion_id"] == str(suggestion.id)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://10.0.0.5/docs",
            "10.0.0.5 resolves to 10.0.0.5, a private address; AgentKey only calls public addresses.",
        ),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[::1]/docs", "a loopback address"),
        ("http://127.0.0.1/docs", "a loopback address"),
        ("https://93.184.216.34:8443/docs", "Port 8443 is not allowed here."),
        ("ftp://docs.example.com/auth", "is not a valid http(s) URL."),
        ("https://user:pass@93.184.216.34/docs", "is not a valid http(s) URL."),
        ("", "Enter the URL of the tool's documentation page."),
        ("https://93.184.216.34/" + "a" * 500, "The URL is longer than 500 characters."),
    ],
)
def test_urls_that_must_not_be_fetched_are_refused_with_a_clear_message(org, owner, url, message, audit_log):
    with pytest.raises(ValidationFailed) as refused:
        draft_start(org=org, actor=owner, source_url=url)

    assert message in refused.value.error
    assert refused.value.details[0].field == "source_url"
    assert not GuideDraft.objects.exists()
    assert audit_log.actions() == []


def test_loopback_is_allowed_only_by_the_development_setting(org, owner, settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True

    assert (
        draft_start(org=org, actor=owner, source_url="http://127.0.0.1:8000/docs").status
        == DraftStatus.PENDING
    )


@pytest.mark.parametrize("role", ["approver", "auditor"])
def test_approvers_and_auditors_cannot_start_apply_or_discard(org, tool, role, request):
    member = request.getfixturevalue(role)
    draft = finished(org, tool)

    with pytest.raises(Forbidden):
        draft_start(org=org, actor=member, source_url=DOCS_URL, tool=tool)
    with pytest.raises(Forbidden):
        draft_apply(draft=draft, actor=member)
    with pytest.raises(Forbidden):
        draft_discard(draft=draft, actor=member)
    assert GuideDraft.objects.get(pk=draft.pk).applied_version is None


def test_another_organizations_tool_or_draft_is_refused(org, owner, other_org):
    stranger_tool = factories.make_tool(other_org, "Stranger tool")
    stranger_draft = finished(other_org, stranger_tool)

    with pytest.raises(Forbidden):
        draft_start(org=org, actor=owner, source_url=DOCS_URL, tool=stranger_tool)
    with pytest.raises(Forbidden):
        draft_apply(draft=stranger_draft, actor=owner)
    with pytest.raises(Forbidden):
        draft_discard(draft=stranger_draft, actor=owner)


def test_an_organization_has_a_few_drafts_in_progress_at_most(org, owner):
    for _ in range(services.IN_PROGRESS_LIMIT):
        draft_start(org=org, actor=owner, source_url=DOCS_URL)

    with pytest.raises(Conflict) as refused:
        draft_start(org=org, actor=owner, source_url=DOCS_URL)
    assert "already being written" in refused.value.error


def test_a_queue_that_cannot_be_reached_fails_the_draft_at_once(org, owner, monkeypatch, caplog):
    draft = draft_start(org=org, actor=owner, source_url=DOCS_URL)
    task = generate_guide_draft
    monkeypatch.setitem(task.app.conf, "task_always_eager", False)

    def down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(task, "apply_async", down)

    services.schedule(draft.id)

    draft.refresh_from_db()
    assert draft.status == DraftStatus.FAILED
    assert draft.error == services.QUEUE_DOWN_TEXT


# --- apply -----------------------------------------------------------------------------------------


def test_applying_makes_the_draft_the_next_guide_version_with_its_provenance(org, owner, tool, audit_log):
    draft = finished(org, tool)

    version = draft_apply(draft=draft, actor=owner, expected_version=tool.current_guide_version)

    tool = Tool.objects.get(pk=tool.pk)
    assert version.version == 2
    assert tool.usage_guide == draft.content
    assert tool.current_guide_version == 2
    assert GuideVersion.objects.get(tool=tool, version=1).content == "Team key: PLATFORM."
    draft.refresh_from_db()
    assert draft.applied_version == 2
    assert draft.applied_at is not None
    assert audit_log.actions() == [Action.TOOL_GUIDE_UPDATED, Action.GUIDE_DRAFT_APPLIED]
    applied = audit_log.new()[-1]
    assert applied.metadata["version"] == 2
    assert applied.metadata["model"] == "test-model-1"
    assert applied.metadata["source_url"] == DOCS_URL
    assert applied.metadata["drafted_at"].endswith("Z")
    assert applied.metadata["edited"] is False
    assert applied.tool_id == tool.id


def test_the_admins_edits_are_what_gets_applied(org, owner, tool, audit_log):
    draft = finished(org, tool)

    draft_apply(draft=draft, actor=owner, content="Edited guide.\r\nSecond line.", expected_version=1)

    assert Tool.objects.get(pk=tool.pk).usage_guide == "Edited guide.\nSecond line."
    assert GuideDraft.objects.get(pk=draft.pk).content == draft.content  # the draft itself is kept as written
    assert audit_log.new()[-1].metadata["edited"] is True


def test_a_guide_changed_since_the_draft_was_opened_is_a_conflict(org, owner, tool):
    from catalog.services import tool_guide_update

    draft = finished(org, tool)
    tool_guide_update(tool=tool, actor=owner, content="Someone else's edit.")

    with pytest.raises(Conflict) as refused:
        draft_apply(draft=draft, actor=owner, expected_version=1)

    assert "changed since you opened it" in refused.value.error
    assert Tool.objects.get(pk=tool.pk).usage_guide == "Someone else's edit."
    assert GuideDraft.objects.get(pk=draft.pk).applied_version is None


def test_a_draft_is_applied_once(org, owner, tool):
    draft = finished(org, tool)
    draft_apply(draft=draft, actor=owner)

    with pytest.raises(Conflict) as refused:
        draft_apply(draft=draft, actor=owner)
    assert "already applied" in refused.value.error


@pytest.mark.parametrize("status", [DraftStatus.PENDING, DraftStatus.RUNNING, DraftStatus.FAILED])
def test_only_a_finished_draft_can_be_applied(org, owner, tool, status):
    draft = finished(org, tool, content="", status=status, finished_at=None)

    with pytest.raises(Conflict):
        draft_apply(draft=draft, actor=owner)
    assert Tool.objects.get(pk=tool.pk).current_guide_version == 1


def test_a_draft_for_a_tool_not_yet_created_is_used_on_the_new_tool_form_instead(org, owner):
    with pytest.raises(ValidationFailed) as refused:
        draft_apply(draft=finished(org), actor=owner)
    assert "not attached to a tool" in refused.value.error


def test_an_empty_text_is_not_applied(org, owner, tool):
    with pytest.raises(ValidationFailed):
        draft_apply(draft=finished(org, tool), actor=owner, content="  \n")


def test_content_is_only_ever_stored_on_a_finished_draft(org, tool):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        finished(org, tool, status=DraftStatus.FAILED)


# --- discard ---------------------------------------------------------------------------------------


def test_discarding_deletes_the_draft_and_audits_it(org, owner, tool, audit_log):
    draft = finished(org, tool)

    draft_discard(draft=draft, actor=owner)

    assert not GuideDraft.objects.filter(pk=draft.pk).exists()
    event = audit_log.new()[-1]
    assert event.action == Action.GUIDE_DRAFT_DISCARDED
    assert event.metadata == {"status": "done", "model": "test-model-1", "source_url": DOCS_URL}
    with pytest.raises(Conflict):
        draft_discard(draft=draft, actor=owner)
