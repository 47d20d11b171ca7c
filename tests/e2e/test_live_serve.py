"""The agent journey once against a live `make serve` on PostgreSQL (issue #2 acceptance).

Real gunicorn with production settings, real HTTP with `requests`, the real
operator CLI in subprocesses, the real admin over a logged-in session.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.support.live import LiveStack, live_stack

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with live_stack(tmp_path_factory.mktemp("live")) as running:
        yield running


class Agent:
    def __init__(self, stack: LiveStack, key: str) -> None:
        self.base = stack.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=10)

    def post(self, path: str, body: dict[str, str]) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=10)

    def access(self, tool_id: str) -> str:
        return str(
            next(t["your_access"] for t in self.get("/api/tools").json()["tools"] if t["id"] == tool_id)
        )


def csrf_token(page: requests.Response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {page.url} ({page.status_code})"
    return str(match.group(1))


def admin_session(stack: LiveStack) -> requests.Session:
    """Sign in to the admin the way a person does: through allauth, with a verified address."""
    password = "live-admin-" + "x" * 12
    stack.shell(
        "from accounts.models import User; from allauth.account.models import EmailAddress; "
        f"u = User.objects.create_superuser('ops@live.example', '{password}'); "
        "EmailAddress.objects.create(user=u, email=u.email, verified=True, primary=True)"
    )
    session = requests.Session()
    login_page = session.get(f"{stack.base_url}/admin/login/?next=/admin/", timeout=10)
    assert "/accounts/login/" in login_page.url, "the admin signs in through allauth"
    response = session.post(
        login_page.url,
        data={
            "csrfmiddlewaretoken": csrf_token(login_page),
            "login": "ops@live.example",
            "password": password,
        },
        headers={"Referer": login_page.url},
        timeout=10,
    )
    assert response.ok
    assert session.get(f"{stack.base_url}/admin/", timeout=10).url.endswith("/admin/"), "admin login failed"
    return session


def admin_action(
    stack: LiveStack, session: requests.Session, action: str, grant_id: str, **fields: str
) -> None:
    token = csrf_token(session.get(f"{stack.base_url}/admin/grants/accessgrant/", timeout=10))
    response = session.post(
        f"{stack.base_url}/admin/grants/accessgrant/",
        data={
            "csrfmiddlewaretoken": token,
            "action": action,
            "_selected_action": grant_id,
            "apply": "1",
            **fields,
        },
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:1000]


def audit_actions(stack: LiveStack) -> list[str]:
    out = stack.shell(
        "import json; from audit.models import AuditEvent; "
        "print(json.dumps(list(AuditEvent.objects.order_by('id').values_list('action', flat=True))))"
    )
    return [str(action) for action in json.loads(out.strip().splitlines()[-1])]


def test_the_whole_journey_against_make_serve(stack):
    org = stack.manage("createorg", "Live Co")
    first = stack.manage("createagent", "--org", org["slug"], "--name", "Onboarding-Agent")
    second = stack.manage("createagent", "--org", org["slug"], "--name", "Billing-Agent")
    credential = "lin_api_" + "k" * 30
    tool = stack.manage(
        "createtool",
        "--org",
        org["slug"],
        "--name",
        "Linear",
        "--url",
        "https://linear.app",
        stdin=credential,
    )
    agent = Agent(stack, first["api_key"])
    stack.secrets += [first["api_key"], second["api_key"], credential]

    # list -> request -> approve through the service -> vend
    assert agent.access(tool["tool_id"]) == "none"
    created = agent.post(
        f"/api/tools/{tool['tool_id']}/request", {"reason": "I file bugs in Linear for the team."}
    )
    assert created.status_code == 201
    grant_id = created.json()["request_id"]
    stack.shell(
        "from accounts.permissions import Operator; from grants.models import AccessGrant; "
        "from grants.services import grant_approve; "
        f"grant_approve(grant=AccessGrant.objects.get(id='{grant_id}'), reviewer=Operator(label='live test'))"
    )
    vend = agent.get(f"/api/tools/{tool['tool_id']}/credentials")
    assert vend.status_code == 200
    assert vend.json()["credential"] == credential
    assert vend.headers["Cache-Control"] == "no-store, private"

    # rotate the shared credential -> the next vend returns the new value
    rotated = "lin_api_" + "r" * 30
    stack.secrets.append(rotated)
    stack.manage("rotatetoolcredential", tool["tool_id"], stdin=rotated)
    assert agent.get(f"/api/tools/{tool['tool_id']}/credentials").json()["credential"] == rotated

    # revoke (CLI) -> the very next vend is 403
    stack.manage("revoke", grant_id)
    refused = agent.get(f"/api/tools/{tool['tool_id']}/credentials")
    assert refused.status_code == 403
    assert "revoked" in refused.json()["hint"]

    # re-request -> approve through the CLI -> vend
    assert (
        agent.post(
            f"/api/tools/{tool['tool_id']}/request", {"reason": "Back on bug duty this week."}
        ).status_code
        == 201
    )
    stack.manage("approve", grant_id, "--expires-in", "8h")
    assert agent.get(f"/api/tools/{tool['tool_id']}/credentials").status_code == 200
    stack.manage("revoke", grant_id)

    # re-request -> approve through the admin action -> vend
    assert (
        agent.post(
            f"/api/tools/{tool['tool_id']}/request", {"reason": "Release week needs it again."}
        ).status_code
        == 201
    )
    admin_action(stack, admin_session(stack), "approve_selected", grant_id, duration="none")
    assert agent.get(f"/api/tools/{tool['tool_id']}/credentials").json()["credential"] == rotated

    # two spellings -> one suggestion, two backers -> the operator adds the tool -> both pending
    other = Agent(stack, second["api_key"])
    one = agent.post(
        "/api/tools/suggest",
        {"name": "Notion", "url": "https://www.notion.so", "reason": "Specs live there."},
    )
    two = other.post(
        "/api/tools/suggest", {"name": "notion.so", "url": "notion.so/docs", "reason": "Runbooks live there."}
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["suggestion_id"] == two.json()["suggestion_id"]
    assert two.json()["existing"] is True
    notion = stack.manage(
        "createtool",
        "--org",
        org["slug"],
        "--name",
        "Notion",
        "--url",
        "https://notion.so",
        stdin="ntn_" + "n" * 30,
    )
    assert notion["accepted_suggestions"] == [one.json()["suggestion_id"]]
    assert agent.access(notion["tool_id"]) == "pending"
    assert other.access(notion["tool_id"]) == "pending"

    actions = audit_actions(stack)
    assert actions.count("credential.vended") == 4
    assert actions.count("grant.approved") == 3
    assert actions.count("grant.revoked") == 2
    assert "tool.credential_rotated" in actions
    assert actions[-3:] == ["tool_suggestion.accepted", "grant.requested", "grant.requested"]

    log = stack.log()
    assert "GET /api/tools/" in log, "the access log is captured"
    for secret in stack.secrets:
        assert secret not in log, "no secret in the server's logs"


def test_a_credential_of_no_known_shape_in_a_url_never_reaches_the_server_log(stack):
    """A client pasting a credential into a path or query: gunicorn's access log and
    Django's "Not Found" warning both log the path sanitized (agentkey.core.logging.safe_path)."""
    pasted = "plainlowercasetokenvalue"  # no provider shape: only the path rules can hide it
    hexish = "9f86d081884c7d659a2feaa0c55ad015"
    session = requests.Session()
    paths = [
        f"/api/tools/{pasted}/credentials",
        f"/api/tools/{hexish}/credentials",
        f"/api/tools?token={pasted}",
        f"/invitations/{pasted}/",
        f"/no-such-page/{hexish}",
    ]
    for path in paths:
        response = session.get(
            stack.base_url + path,
            headers={"Authorization": f"Bearer {pasted}", "Referer": f"https://x.example/?k={hexish}"},
            timeout=10,
        )
        assert response.status_code < 500, (path, response.status_code)
    log = stack.log()
    assert "GET /api/tools/…/credentials" in log, "the request is still logged, sanitized"
    assert pasted not in log
    assert hexish not in log
