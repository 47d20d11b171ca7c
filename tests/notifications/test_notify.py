"""notify(): the contract with the domain services — rows in the caller's transaction, labels only."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.db import transaction

from accounts.models import Role
from notifications.models import Delivery, DeliveryChannel, EmailSettings, Event
from notifications.services import email_settings_update, endpoint_create, notify
from tests import factories
from tests.notifications.conftest import LINK, new_url

pytestmark = pytest.mark.django_db


def channel(org, owner, kind="slack", events=("access.requested",), name=None):
    return endpoint_create(
        org=org, actor=owner, name=name or f"#{kind}", kind=kind, url=new_url(kind), events=list(events)
    )


def verified(org, role, *, primary=True, email=None):
    member = factories.make_member(org, role)
    EmailAddress.objects.create(
        user=member.user, email=email or member.user.email, verified=True, primary=primary
    )
    return member


def test_one_row_per_subscribed_enabled_channel_in_the_callers_transaction(org, other_org, owner):
    slack = channel(org, owner, "slack")
    discord = channel(org, owner, "discord")
    channel(org, owner, "generic", events=["access.approved"])
    channel(other_org, factories.make_member(other_org, Role.OWNER), "slack")
    with transaction.atomic():
        rows = notify(
            org_id=org.id,
            event=Event.ACCESS_REQUESTED,
            subject={"agent": "Onboarding-Agent", "tool": "Linear", "reason": "Bugs.", "duration": "8 h"},
            link=LINK,
        )
        assert Delivery.objects.count() == 2, "written inside the caller's transaction"
    assert {(r.endpoint_id, r.channel) for r in rows} == {(slack.id, "slack"), (discord.id, "discord")}
    for row in Delivery.objects.filter(id__in=[r.id for r in rows]):
        assert row.org_id == org.id
        assert (row.status, row.attempts, row.event) == ("pending", 0, "access.requested")
        assert row.payload == {
            "subject": {"agent": "Onboarding-Agent", "tool": "Linear", "reason": "Bugs.", "duration": "8 h"},
            "link": LINK,
        }
        assert row.next_attempt_at == row.created_at
        assert row.message_id == f"msg_{row.id.hex}"
        assert row.recipient == ""


def test_the_rows_go_when_the_callers_transaction_rolls_back(org, owner):
    channel(org, owner)

    def failing_request() -> None:
        with transaction.atomic():
            notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={"agent": "A"}, link=LINK)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    assert not Delivery.objects.exists()


def test_a_paused_channel_is_skipped(org, owner):
    from notifications.services import endpoint_set_enabled

    endpoint_set_enabled(endpoint=channel(org, owner), actor=owner, enabled=False)
    assert notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={}, link=LINK) == []


@pytest.mark.parametrize(
    "subject",
    [
        {"agent": object()},
        {"Agent Name": "x"},
        {"link": "https://evil.example"},
        {"organization": "Other"},
        {f"k{n}": "v" for n in range(17)},
    ],
)
def test_the_subject_holds_labels_only(org, subject):
    with pytest.raises((TypeError, ValueError)):
        notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject=subject, link=LINK)


def test_empty_labels_are_dropped_and_long_ones_cut_when_stored(org, owner):
    channel(org, owner, events=["tool.suggested"])
    [row] = notify(
        org_id=org.id,
        event=Event.TOOL_SUGGESTED,
        subject={"agent": "A", "tool": "Wiki", "url": "", "reason": "r" * 3000},
        link=LINK,
    )
    stored = Delivery.objects.get(id=row.id).payload["subject"]
    assert "url" not in stored
    assert len(stored["reason"]) == 2000


def test_an_unknown_event_is_a_programming_error(org):
    with pytest.raises(ValueError, match="not a valid Event"):
        notify(org_id=org.id, event="access.exploded", subject={}, link=LINK)  # type: ignore[arg-type]


def test_a_link_that_is_not_http_falls_back_to_the_dashboard(org, owner, settings):
    channel(org, owner)
    [row] = notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={}, link="javascript:alert(1)")
    assert row.payload["link"] == settings.AGENTKEY_PUBLIC_URL + "/"


# --- email -----------------------------------------------------------------------------------------


def test_email_goes_to_each_verified_decider_once(org, other_org):
    owner = verified(org, Role.OWNER)
    admin = verified(org, Role.ADMIN)
    approver = verified(org, Role.APPROVER)
    verified(org, Role.AUDITOR)  # reads, does not decide
    unverified = factories.make_member(org, Role.APPROVER)
    EmailAddress.objects.create(user=unverified.user, email=unverified.user.email, verified=False)
    factories.make_member(org, Role.APPROVER)  # no address at all
    gone = verified(org, Role.ADMIN)
    gone.user.is_active = False
    gone.user.save()
    verified(other_org, Role.OWNER)
    EmailAddress.objects.create(user=approver.user, email="second@example.com", verified=True, primary=False)
    rows = notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={"agent": "A"}, link=LINK)
    assert {r.channel for r in rows} == {DeliveryChannel.EMAIL}
    assert sorted(r.recipient for r in rows) == sorted(
        [owner.user.email, admin.user.email, approver.user.email]
    )
    assert all(r.endpoint_id is None for r in rows)


def test_suggestions_are_emailed_to_those_who_manage_tools_only(org):
    owner = verified(org, Role.OWNER)
    verified(org, Role.APPROVER)
    rows = notify(
        org_id=org.id, event=Event.TOOL_SUGGESTED, subject={"agent": "A", "tool": "Wiki"}, link=LINK
    )
    assert [r.recipient for r in rows] == [owner.user.email]


def test_email_can_be_switched_off_or_narrowed(org, audit_log):
    owner = verified(org, Role.OWNER)
    email_settings_update(org=org, actor=owner, enabled=True, events=["access.approved"])
    assert notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={}, link=LINK) == []
    assert len(notify(org_id=org.id, event=Event.ACCESS_APPROVED, subject={}, link=LINK)) == 1
    email_settings_update(org=org, actor=owner, enabled=False, events=[])
    assert notify(org_id=org.id, event=Event.ACCESS_APPROVED, subject={}, link=LINK) == []
    assert [e.action for e in audit_log.new()] == ["notification.email_updated"] * 2
    assert audit_log.new()[-1].metadata == {"enabled": False, "events": []}


def test_email_defaults_to_on_for_the_default_events(org):
    verified(org, Role.OWNER)
    assert not EmailSettings.objects.exists()
    for event in (Event.ACCESS_REQUESTED, Event.TOOL_SUGGESTED, Event.GUIDE_SUGGESTED):
        assert len(notify(org_id=org.id, event=event, subject={}, link=LINK)) == 1
    for event in (Event.ACCESS_APPROVED, Event.ACCESS_DENIED, Event.ACCESS_REVOKED):
        assert notify(org_id=org.id, event=event, subject={}, link=LINK) == []


def test_an_email_to_someone_who_left_is_not_sent(org):
    from django.core import mail

    from tests.notifications.conftest import run

    approver = verified(org, Role.APPROVER)
    [row] = notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject={}, link=LINK)
    approver.delete()
    row = run(row)
    assert (row.status, row.last_error) == (
        "dead",
        "The recipient can no longer act on this event, so the email was not sent.",
    )
    assert mail.outbox == []


def test_only_managers_change_the_email_setting(org, approver):
    from agentkey.core.errors import Forbidden

    with pytest.raises(Forbidden):
        email_settings_update(org=org, actor=approver, enabled=False, events=[])


def test_email_on_needs_an_event(org, owner):
    from agentkey.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="at least one event"):
        email_settings_update(org=org, actor=owner, enabled=True, events=[])
    with pytest.raises(ValidationFailed, match="Unknown event"):
        email_settings_update(org=org, actor=owner, enabled=True, events=["notification.test"])
