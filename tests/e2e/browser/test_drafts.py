"""A usage guide drafted from documentation, streamed live into a real browser, reviewed and applied."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Membership
from audit.models import Action, AuditEvent
from catalog.models import DraftStatus, GuideDraft, Tool
from grants.services import tool_add
from tests.catalog.drafts.support import GITHUB_PAGE, GUIDE_CHUNKS, docs_site, model_server
from tests.e2e.browser.conftest import shoot, sign_up
from tests.factories import OPERATOR, new_credential
from tests.support.secret_watch import WATCH

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
HOME = re.compile(r"^https?://[^/]+/$")


@pytest.fixture
def docs():
    with docs_site() as site:
        yield site


@pytest.fixture
def model(settings):
    with model_server() as server:
        server.delay = 0.15  # ten chunks, 150 ms apart: the page must show them as they come
        settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
        settings.AGENTKEY_LLM_BASE_URL = server.base_url
        settings.AGENTKEY_LLM_MODEL = "test-model-1"
        settings.AGENTKEY_LLM_API_KEY = ""
        yield server


def test_a_draft_streams_into_the_page_then_becomes_the_usage_guide(page, docs, model):
    sign_up(page, "admin@example.com")
    page.get_by_label("Organization name").fill("Acme Robotics")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url(HOME)
    org = Membership.objects.get(user__email="admin@example.com").org
    credential = new_credential("ghp")
    WATCH.register(credential)
    tool = tool_add(
        org=org,
        actor=OPERATOR,
        name="GitHub",
        url="https://github.com",
        credential=credential,
        usage_guide="Old.",
    ).tool

    # From the usage-guide page, draft a new guide from the documentation URL.
    page.goto(f"/tools/{tool.id}/guide")
    page.get_by_role("link", name="Draft a guide from docs").click()
    page.get_by_label("Documentation URL").fill(docs.page(GITHUB_PAGE))
    page.get_by_role("button", name="Draft the guide").click()
    page.wait_for_url(re.compile(r"/drafts/[0-9a-f-]+/$"))
    draft = GuideDraft.objects.get(tool=tool)

    # Deltas appear while the generation is still running.
    output = page.locator("[data-draft-output]")
    expect(output).to_contain_text("## Authentication")
    partial = output.inner_text()
    status = page.locator("[data-draft-status]").inner_text()
    assert status == "running", f"the draft finished before the text was seen ({status!r})"
    assert len(partial.strip()) < len("".join(GUIDE_CHUNKS).strip())
    assert GuideDraft.objects.get(pk=draft.pk).status == DraftStatus.RUNNING
    shoot(page, "guide-draft-streaming")

    # At "done" the page shows the finished draft for review, with its provenance.
    content = page.locator("textarea[name=content]")
    expect(content).to_be_visible(timeout=20000)
    expect(page.locator("[data-draft-status]")).to_have_text("done")
    assert content.input_value().strip() == "".join(GUIDE_CHUNKS).strip()
    assert page.get_by_text("test-model-1").is_visible()
    assert page.locator("main").get_by_text(docs.page(GITHUB_PAGE)).first.is_visible()
    shoot(page, "guide-draft-review")

    # The admin edits it and applies it: it becomes the next version of the usage guide.
    content.fill(content.input_value() + "\n\nReviewed by the platform team.")
    page.get_by_role("button", name="Apply as the usage guide").click()
    page.wait_for_url(re.compile(rf"/tools/{tool.id}/guide$"))
    expect(page.locator(".messages")).to_contain_text("is now the usage guide of GitHub (version 2)")

    tool = Tool.objects.get(pk=tool.pk)
    assert tool.current_guide_version == 2
    assert tool.usage_guide.endswith("Reviewed by the platform team.")
    assert tool.usage_guide.startswith("## Base URL")
    actions = list(
        AuditEvent.objects.filter(org_id=org.id, tool_id=tool.id, action__startswith="guide_draft")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [Action.GUIDE_DRAFT_STARTED, Action.GUIDE_DRAFT_COMPLETED, Action.GUIDE_DRAFT_APPLIED]
    applied = AuditEvent.objects.get(action=Action.GUIDE_DRAFT_APPLIED)
    assert applied.metadata["model"] == "test-model-1"
    assert applied.metadata["source_url"] == docs.page(GITHUB_PAGE)
    assert applied.metadata["edited"] is True
    assert AuditEvent.objects.filter(action=Action.TOOL_GUIDE_UPDATED, tool_id=tool.id).exists()
    assert credential not in model.requests[-1]["raw"]
