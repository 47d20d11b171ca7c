"""Console hardening found in review: sign-in limits, lookup oracles, sensitive POSTs, audited privileges."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role, User
from audit.models import Action
from tests import factories
from tests.admin.conftest import TOOLS, form_data

pytestmark = pytest.mark.django_db


def test_the_admin_signs_in_through_allauth(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/"), (
        "allauth's sign-in (with MFA) guards the admin"
    )


def test_sign_in_attempts_are_rate_limited_per_username_and_address(settings):
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "admin": "5/m"}
    factories.make_user(email="target@example.com", is_staff=True)
    client = Client()
    codes = [
        client.post("/accounts/login/", {"login": "target@example.com", "password": f"guess-{i}"}).status_code
        for i in range(6)
    ]
    assert codes[:5] == [200] * 5, "wrong passwords re-render the form"
    assert codes[5] == 429
    # Another address cannot continue against the same account either.
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    refused = elsewhere.post("/accounts/login/", {"login": "TARGET@example.com", "password": "guess-6"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1


def test_signed_in_writes_are_counted_per_person(settings, console, org):
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "admin": "2/m"}
    assert [console.post(TOOLS + "add/", {}).status_code for _ in range(3)][-1] == 429


@pytest.mark.parametrize(
    "url",
    [
        "/admin/accounts/agentkey/?key_hash__startswith=ab",
        "/admin/accounts/user/?password__startswith=md5",
        "/admin/vault/secret/?ciphertext__isnull=False&wrapped_dek__startswith=a",
        "/admin/audit/auditevent/?metadata__reason__startswith=a",
        "/admin/grants/accessgrant/?agent__keys__key_hash__startswith=ab",
    ],
)
def test_changelists_are_not_lookup_oracles(console, issued, url):
    assert console.get(url).status_code == 400


def test_declared_filters_still_work(console, issued, org):
    assert (
        console.get(f"/admin/accounts/agent/?status__exact=active&org__id__exact={org.id}").status_code == 200
    )


def test_credential_fields_are_masked_in_error_reports(console, org):
    response = console.post(TOOLS + "add/", {"org": str(org.id), "name": "", "credential": "sk_live_masked"})
    assert list(response.wsgi_request.sensitive_post_parameters) == ["credential"]


def test_privilege_changes_in_the_user_admin_are_audited(console, audit_log):
    person = factories.make_user(email="promote@example.com")
    page = console.get(f"/admin/accounts/user/{person.pk}/change/")
    assert page.status_code == 200
    audit_log.mark()
    data = form_data(page, "user_form")
    data.update(is_staff="on", is_superuser="on")
    response = console.post(f"/admin/accounts/user/{person.pk}/change/", data)
    assert response.status_code == 302, response.content[:600]
    [event] = audit_log.new()
    assert event.action == Action.USER_UPDATED
    assert event.target_label == "promote@example.com"
    assert event.metadata["is_superuser"] is True
    assert User.objects.get(pk=person.pk).is_superuser

    audit_log.mark()
    response = console.post(
        f"/admin/accounts/user/{person.pk}/password/",
        {
            "password1": "a-new-long-passphrase-1",
            "password2": "a-new-long-passphrase-1",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:600]
    assert audit_log.actions() == [Action.USER_PASSWORD_SET]


def test_an_approver_staff_member_cannot_open_the_user_admin(staff_member, org):
    client = staff_member((org, Role.APPROVER))
    assert client.get("/admin/accounts/user/").status_code == 403
