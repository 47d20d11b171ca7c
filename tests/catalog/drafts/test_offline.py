"""The offline drafter, on real documentation pages saved in tests/fixtures/docs (see its README)."""

from __future__ import annotations

import pytest

from catalog.drafts import offline
from catalog.drafts.prompt import Subject
from catalog.drafts.text import html_to_text
from tests.catalog.drafts.support import DOCS, GITHUB_PAGE, GITLAB_PAGE, GITLAB_TOKENS_PAGE


def guide_from(page: str, name: str) -> str:
    text = html_to_text((DOCS / page).read_text())
    return "".join(offline.draft(Subject(name, "", "API key", f"https://docs.example/{page}"), text))


def section(guide: str, title: str) -> str:
    body = guide.split(f"## {title}\n\n", 1)[1]
    return body.split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def github() -> str:
    return guide_from(GITHUB_PAGE, "GitHub")


@pytest.fixture(scope="module")
def gitlab() -> str:
    return guide_from(GITLAB_PAGE, "GitLab")


@pytest.fixture(scope="module")
def gitlab_tokens() -> str:
    return guide_from(GITLAB_TOKENS_PAGE, "GitLab")


def test_github_guide_has_the_base_url_and_the_auth_header_format(github):
    assert section(github, "Base URL").strip() == "- `https://api.github.com`"
    auth = section(github, "Authentication")
    assert "`Authorization: Bearer {{credential}}`" in auth
    assert "`Authorization: token {{credential}}`" in auth  # the alternative the page documents


def test_github_guide_says_how_to_create_the_token_and_which_scopes(github):
    creating = section(github, "Getting the credential (for the admin)")
    assert "you can create a personal access token" in creating
    scopes = section(github, "Scopes and permissions")
    assert "requires specific scopes in order to access each REST API endpoint" in scopes
    assert "fine-grained personal access token requires specific permissions" in scopes


def test_github_guide_carries_the_conventions_rate_limits_and_pitfalls(github):
    assert "`X-GitHub-Api-Version: 2022-11-28`" in section(github, "Conventions")
    assert "more requests per hour when you are authenticated" in section(github, "Rate limits")
    assert "401 Unauthorized" in section(github, "Pitfalls")


def test_github_example_request_uses_the_placeholder_not_the_docs_token(github):
    example = section(github, "Example request")
    assert '--url "https://api.github.com/octocat"' in example
    assert '--header "Authorization: Bearer {{credential}}"' in example
    assert "YOUR-TOKEN" not in github


def test_gitlab_guide_has_the_versioned_base_url_and_both_header_styles(gitlab):
    assert "`https://gitlab.example.com/api/v4`" in section(gitlab, "Base URL")
    auth = section(gitlab, "Authentication")
    assert "`PRIVATE-TOKEN: {{credential}}`" in auth
    assert "`Authorization: Bearer {{credential}}`" in auth
    assert "`private_token`" in auth
    assert "prefer the header" in auth
    assert "<your_access_token>" not in gitlab
    assert "OAUTH-TOKEN" not in gitlab


def test_gitlab_guide_names_the_sudo_scope_and_the_error_codes(gitlab):
    assert "`sudo` scope" in section(gitlab, "Scopes and permissions")
    assert "status code of `401`." in section(gitlab, "Pitfalls")


def test_gitlab_token_page_gives_the_creation_steps_and_the_scope_table(gitlab_tokens):
    creating = section(gitlab_tokens, "Getting the credential (for the admin)")
    assert "Select Create personal access token." in creating
    assert "Select the desired scopes." in creating
    scopes = section(gitlab_tokens, "Scopes and permissions")
    assert "`read_api`: Read-only for the complete API" in scopes
    assert "`api`: Read-write for the complete API" in scopes
    assert "Personal access tokens expire on the date you define" in section(gitlab_tokens, "Pitfalls")


def test_a_page_without_an_api_says_so_instead_of_inventing(gitlab_tokens):
    assert section(gitlab_tokens, "Base URL").strip() == offline.NOT_STATED
    assert section(gitlab_tokens, "Example request").strip() == offline.NOT_STATED


def test_the_guide_arrives_in_several_chunks():
    text = html_to_text((DOCS / GITHUB_PAGE).read_text())
    chunks = list(offline.draft(Subject("GitHub", "", "API key", "https://docs.example/x"), text))

    assert len(chunks) >= 8
    assert chunks[0].startswith("# GitHub: usage guide for agents")


@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "a1B2c3D4e5" * 4,
        "glpat-" + "x1Y2z3W4v5U6t7S8",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "xoxb-" + "1234567890-abcdefghij",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWpr",
    ],
)
def test_anything_shaped_like_a_real_token_is_replaced(token):
    assert offline.scrub(f"use {token} here") == "use {{credential}} here"


def test_ordinary_identifiers_survive_the_scrub():
    text = "read_repository write_registry https://api.github.com/repos/octocat/hello-world 2022-11-28"
    assert offline.scrub(text) == text
