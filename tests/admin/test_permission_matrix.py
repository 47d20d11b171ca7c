"""Every admin URL, for anonymous visitors, members who are not staff, staff of another
organization and superusers → the expected outcome.

Generated from the URL configuration. Model URLs are classified by their kind
(changelist, add, change, history, delete); any other admin URL must be listed
in SITE_URLS or OBJECT_URLS, so a new custom admin view cannot ship unclassified.
Role-by-role behaviour inside an organization is covered by test_smoke.py and the
per-admin tests; this matrix is about who gets into the console at all and who
can reach another organization's rows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Role
from tests import factories
from tests.admin.test_smoke import ADD_REFUSED, REGISTERED

pytestmark = pytest.mark.django_db

MODEL_URL = re.compile(r"^(?P<app>\w+?)_(?P<model>\w+?)_(?P<kind>changelist|add|change|delete|history)$")
#: Admin-wide pages: (name, method).
SITE_URLS = {
    "index": "GET",
    "login": "GET",
    "logout": "POST",
    "password_change": "GET",
    "password_change_done": "GET",
    "autocomplete": "GET",
    "jsi18n": "GET",
    "view_on_site": "GET",
    "app_list": "GET",
}
#: Custom per-object admin views: name -> (model label, method).
OBJECT_URLS = {
    "accounts_agent_rotate_key": ("accounts.Agent", "GET"),
    "grants_accessgrant_approve": ("grants.AccessGrant", "GET"),
    "auth_user_password_change": ("accounts.User", "GET"),  # Django's UserAdmin names it so
}
PERSONAS = ["anonymous", "member", "outsider_staff", "superuser"]


def admin_url_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns: list[Any], namespace: str | None) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and namespace == "admin" and entry.name:
                names.add(entry.name)

    walk(get_resolver().url_patterns, None)
    return names


def test_every_admin_url_is_classified():
    unknown = {n for n in admin_url_names() if not MODEL_URL.match(n)} - set(SITE_URLS) - set(OBJECT_URLS)
    assert unknown == set(), "new admin URLs need an entry in SITE_URLS or OBJECT_URLS"
    labels = {m._meta.label for m in REGISTERED}
    assert {label for label, _ in OBJECT_URLS.values()} <= labels


def cases() -> list[tuple[str, str]]:
    return sorted((name, persona) for name in admin_url_names() for persona in PERSONAS)


def client_for(persona: str, org: Any, other_org: Any) -> Client:
    client = Client()
    if persona == "member":
        client.force_login(factories.make_member(org, Role.OWNER).user)  # an owner, but not staff
    elif persona == "outsider_staff":
        user = factories.make_user(is_staff=True)
        factories.make_member(other_org, Role.OWNER, user=user)
        client.force_login(user)
    elif persona == "superuser":
        client.force_login(factories.make_user(is_staff=True, is_superuser=True))
    return client


def target(name: str, world: dict[Any, Any]) -> tuple[str, str, Any] | None:
    """(url, method, object or None) for a URL name; None for URLs not reachable by GET/POST here."""
    if name in SITE_URLS:
        if name == "view_on_site":
            return None  # a redirect helper keyed by content type; nothing of ours uses it
        kwargs = {"app_label": "grants"} if name == "app_list" else {}
        return reverse(f"admin:{name}", kwargs=kwargs), SITE_URLS[name], None
    if name in OBJECT_URLS:
        label, method = OBJECT_URLS[name]
        owner_model = next(m for m in REGISTERED if m._meta.label == label)
        obj = world[owner_model]
        return reverse(f"admin:{name}", args=[quote(obj.pk)]), method, obj
    match = MODEL_URL.match(name)
    assert match
    model: type[Model] | None = next(
        (m for m in REGISTERED if (m._meta.app_label, m._meta.model_name) == (match["app"], match["model"])),
        None,
    )
    if model is None:
        return None
    if match["kind"] in ("changelist", "add"):
        return reverse(f"admin:{name}"), "GET", None
    obj = world[model]
    return reverse(f"admin:{name}", args=[quote(obj.pk)]), "GET", obj


@pytest.mark.parametrize(("name", "persona"), cases())
def test_admin_matrix(name, persona, org, other_org, world):
    found = target(name, world)
    if found is None:
        pytest.skip(f"{name} takes no object of ours")
    url, method, obj = found
    client = client_for(persona, org, other_org)
    response = client.post(url) if method == "POST" else client.get(url)
    status, location = response.status_code, response.get("Location", "")
    if name in ("login", "logout", "jsi18n"):
        # The sign-in pages themselves; a signed-in person who is not staff is refused.
        assert status in ((200, 302, 403) if persona == "member" else (200, 302)), status
        return
    if persona in ("anonymous", "member"):
        # Into the admin only as staff: the rest are sent to sign in (allauth, with MFA) or refused.
        assert status in (302, 403), status
        if status == 302:
            assert "/login/" in location, location
        return
    if persona == "outsider_staff":
        if obj is not None and getattr(obj, "org_id", None) is not None:
            # Another organization's row is not found at all (Django redirects to the index).
            assert status in (302, 403, 404), status
            assert str(obj.pk) not in response.content.decode()
        else:
            assert status in (200, 302, 403), status
        return
    # superuser
    matched = MODEL_URL.match(name)
    kind = matched["kind"] if matched else None
    model = type(obj) if obj is not None else None
    if name == "autocomplete":
        assert status == 403, "autocomplete needs its query parameters"
    elif kind == "delete":
        assert status == 403, "nothing is deleted from the console"
    elif kind == "add":
        refused = any(m._meta.label_lower == name.rsplit("_", 1)[0].replace("_", ".", 1) for m in ADD_REFUSED)
        assert status == (403 if refused else 200), status
    else:
        assert status in (200, 302), (status, model)
