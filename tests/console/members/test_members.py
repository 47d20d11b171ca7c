"""Organizations, members, roles and invitations in the console."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.members import invitation_create
from accounts.models import Invitation, Membership, Organization, Role
from audit.models import Action
from tests import factories

pytestmark = pytest.mark.django_db


def console_for(membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def verified_user(email: str):
    user = factories.make_user(email=email)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def test_a_new_person_creates_an_organization_and_becomes_its_owner(audit_log):
    person = factories.make_user(email="founder@example.com")
    client = Client()
    client.force_login(person)
    assert client.get("/")["Location"] == "/orgs/new", "without an organization, home sends you to create one"
    response = client.post("/orgs/new", {"name": "Acme Robotics"})
    assert response.status_code == 302
    org = Organization.objects.get(name="Acme Robotics")
    assert Membership.objects.get(org=org, user=person).role == Role.OWNER
    assert audit_log.actions() == [Action.ORG_CREATED]
    assert "Acme Robotics" in client.get("/").content.decode()


def test_switching_organizations_changes_what_the_console_shows(owner, other_org):
    factories.make_member(other_org, Role.ADMIN, user=owner.user)
    client = console_for(owner)
    assert owner.org.name in client.get("/members/").content.decode()
    client.post("/orgs/switch", {"org": str(other_org.id)})
    assert other_org.name in client.get("/members/").content.decode()
    # Switching to an organization you are not in does nothing.
    stranger_org = factories.make_org()
    client.post("/orgs/switch", {"org": str(stranger_org.id)})
    assert other_org.name in client.get("/members/").content.decode()


def test_the_invitation_flow_for_a_new_person(owner, audit_log, django_capture_on_commit_callbacks):
    client = console_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/members/invite", {"email": "new.approver@example.com", "role": "approver"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["new.approver@example.com"]
    link = re.search(r"https?://\S+/invitations/(\S+)/", str(message.body))
    assert link, message.body
    token = link.group(1)
    assert Invitation.objects.get().token_digest != token, "only the digest is stored"
    assert audit_log.actions() == [Action.MEMBER_INVITED]

    anonymous = Client()
    page = anonymous.get(f"/invitations/{token}/")
    assert page.status_code == 200
    assert "Create account" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin", "the token never leaves in a Referer to another site"

    newcomer = verified_user("new.approver@example.com")
    anonymous.force_login(newcomer)
    audit_log.mark()
    assert anonymous.post(f"/invitations/{token}/").status_code == 302
    assert Membership.objects.get(org=owner.org, user=newcomer).role == Role.APPROVER
    assert audit_log.actions() == [Action.MEMBER_JOINED]
    assert anonymous.get(f"/invitations/{token}/").status_code == 404, "a link works once"


def test_an_invitation_only_works_for_the_invited_verified_address(owner):
    issued = invitation_create(org=owner.org, email="right@example.com", role="auditor", actor=owner)
    wrong = Client()
    wrong.force_login(verified_user("wrong@example.com"))
    response = wrong.post(f"/invitations/{issued.token}/", follow=True)
    assert "different email address" in response.content.decode()
    unverified = factories.make_user(email="right2@example.com")
    issued2 = invitation_create(org=owner.org, email="right2@example.com", role="auditor", actor=owner)
    client = Client()
    client.force_login(unverified)
    client.post(f"/invitations/{issued2.token}/")
    assert not Membership.objects.filter(org=owner.org, user=unverified).exists(), (
        "the address must be verified"
    )


def test_expired_and_revoked_invitations_are_refused(owner, time_machine):
    from datetime import timedelta

    from django.utils import timezone

    issued = invitation_create(org=owner.org, email="late@example.com", role="auditor", actor=owner)
    time_machine.move_to(timezone.now() + timedelta(days=7, seconds=1))
    client = Client()
    client.force_login(verified_user("late@example.com"))
    assert client.get(f"/invitations/{issued.token}/").status_code == 404
    client.post(f"/invitations/{issued.token}/")
    assert not Membership.objects.filter(org=owner.org, user__email="late@example.com").exists()


def test_roles_change_and_the_last_owner_cannot_be_demoted_or_leave(owner, approver, audit_log):
    client = console_for(owner)
    client.post(f"/members/{approver.pk}/role", {"role": "admin"})
    assert Membership.objects.get(pk=approver.pk).role == Role.ADMIN
    assert audit_log.actions() == [Action.MEMBER_ROLE_CHANGED]

    audit_log.mark()
    page = client.post(f"/members/{owner.pk}/role", {"role": "approver"}, follow=True)
    assert "at least one owner" in page.content.decode()
    page = client.post(f"/members/{owner.pk}/remove", follow=True)
    assert "at least one owner" in page.content.decode()
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER
    assert audit_log.actions() == []


def test_a_member_may_leave_but_not_manage_others(owner, approver, auditor, audit_log):
    client = console_for(approver)
    client.post(f"/members/{auditor.pk}/remove")
    client.post(f"/members/{auditor.pk}/role", {"role": "owner"})
    assert Membership.objects.get(pk=auditor.pk).role == Role.AUDITOR
    assert client.post("/members/invite", {"email": "x@example.com", "role": "owner"}).status_code == 403
    assert audit_log.actions() == []
    client.post(f"/members/{approver.pk}/remove")
    assert not Membership.objects.filter(pk=approver.pk).exists()
    assert audit_log.actions() == [Action.MEMBER_LEFT]


def test_another_organizations_member_ids_are_not_found(owner, stranger_approver):
    client = console_for(owner)
    assert client.post(f"/members/{stranger_approver.pk}/role", {"role": "owner"}).status_code == 404
    assert client.post(f"/members/{stranger_approver.pk}/remove").status_code == 404
    assert Membership.objects.get(pk=stranger_approver.pk).role == Role.APPROVER


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get("/members/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
