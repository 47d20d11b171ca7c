"""Domain events leave outbox rows in the same transaction: one per channel, labels and a deep link."""

from __future__ import annotations

import pytest

from grants.models import AccessGrant
from grants.services import grant_approve, grant_deny, tool_add
from notifications.models import Delivery, Event
from notifications.services import endpoint_create
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture
def channel(org, owner):
    return endpoint_create(
        org=org,
        actor=owner,
        name="Approvers",
        kind="slack",
        url=SLACK,
        events=[Event.ACCESS_REQUESTED, Event.TOOL_SUGGESTED, Event.GUIDE_SUGGESTED, Event.ACCESS_DENIED],
    )


def deliveries(event: str) -> list[Delivery]:
    return list(Delivery.objects.filter(event=event).order_by("created_at"))


def test_an_access_request_notifies_with_labels_and_a_link_to_the_inbox_item(api, tool, channel, settings):
    settings.AGENTKEY_PUBLIC_URL = "https://agentkey.example.com"
    grant_id = api.request_access(tool.id, "I triage the bug queue.", duration="8h").json()["request_id"]
    [delivery] = deliveries(Event.ACCESS_REQUESTED)
    assert delivery.endpoint_id == channel.id
    assert delivery.payload["subject"] == {
        "agent": "Onboarding-Agent",
        "tool": "Linear",
        "reason": "I triage the bug queue.",
        "duration": "8h",
    }
    assert delivery.payload["link"] == f"https://agentkey.example.com/inbox/#grant-{grant_id}"


def test_a_new_suggestion_notifies_once_not_for_each_backer(org, channel):
    for name in ("first", "second", "third"):
        AgentClient(factories.make_agent(org, name).key.plaintext).suggest("Notion", url="https://notion.so")
    [delivery] = deliveries(Event.TOOL_SUGGESTED)
    assert delivery.payload["subject"]["tool"] == "Notion"
    assert "#tool-suggestion-" in delivery.payload["link"]


def test_a_guide_suggestion_notifies_with_a_link_to_the_guide(api, agent, tool, operator, channel):
    from grants.services import grant_assign

    grant_assign(agent=agent, tool=tool, actor=operator)
    api.suggest_instructions(tool.id, "Project key is PLATFORM.")
    api.suggest_instructions(tool.id, "project key is platform")  # the same suggestion again
    [delivery] = deliveries(Event.GUIDE_SUGGESTED)
    assert delivery.payload["subject"]["learned"] == "Project key is PLATFORM."
    assert f"/tools/{tool.id}/guide#suggestion-" in delivery.payload["link"]


def test_decisions_notify_only_channels_that_subscribed(api, agent, tool, approver, channel):
    first = api.request_access(tool.id).json()["request_id"]
    grant_deny(
        grant=AccessGrant.objects.get(id=first), reviewer=approver, reason="Use the shared bot instead."
    )
    [denied] = deliveries(Event.ACCESS_DENIED)
    assert denied.payload["subject"]["decided_by"] == approver.user.email
    assert denied.payload["subject"]["reason"] == "Use the shared bot instead."
    api.request_access(tool.id, "Second try, read only.")
    grant_approve(grant=AccessGrant.objects.get(id=first), reviewer=approver)
    assert deliveries(Event.ACCESS_APPROVED) == [], "the channel did not subscribe to approvals"


def test_backers_of_a_new_tool_each_get_a_request_notification(org, operator, channel):
    for name in ("a", "b"):
        AgentClient(factories.make_agent(org, name).key.plaintext).suggest("Sentry", url="https://sentry.io")
    tool_add(
        org=org, actor=operator, name="Sentry", url="https://sentry.io", credential=factories.new_credential()
    )
    assert len(deliveries(Event.ACCESS_REQUESTED)) == 2


def test_no_channel_means_no_delivery(api, tool):
    api.request_access(tool.id)
    assert not Delivery.objects.exists()


def test_a_rolled_back_request_leaves_no_delivery(api, tool, channel):
    api.request_access(tool.id)
    assert api.request_access(tool.id).status_code == 409
    assert len(deliveries(Event.ACCESS_REQUESTED)) == 1, "the refused second request notified nobody"
