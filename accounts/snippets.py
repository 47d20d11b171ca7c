"""Ready-to-paste instructions that teach an agent to use AgentKey.

One text (``_SECTIONS``) says what an agent must know; each format (CLAUDE.md,
AGENTS.md, .cursorrules, TOOLS.md, a system prompt) only wraps it, and each ends
with the ``mcp.json`` block that connects an MCP client to ``/mcp``. The snippets
never contain the agent's key: they point to the ``AGENTKEY_API_KEY``
environment variable, so they can be pasted into a repository, a prompt or a
chat without leaking anything. Only the env line on the key-shown-once page
carries the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

ENV_KEY = "AGENTKEY_API_KEY"
ENV_URL = "AGENTKEY_URL"

# (title, paragraphs or "- " bullet lines). ``{url}`` is the server's public URL,
# ``{name}`` the agent's name, ``{env_key}`` / ``{env_url}`` the variable names.
_SECTIONS: list[tuple[str, list[str]]] = [
    (
        "What AgentKey is",
        [
            (
                "You ({name}) get the credentials for company tools from AgentKey at {url}. "
                "You start with no access: you ask for a tool with a reason, a human approves, "
                "then you fetch the credential each time you need it."
            ),
            (
                "- Your AgentKey API key is in the environment variable `{env_key}` "
                "(the server's address is in `{env_url}`). Send it on every call as the header "
                "`Authorization: Bearer ${env_key}`; read it from the environment, never type it out."
            ),
            '- Responses are JSON. An error is `{{"error": ..., "hint": ...}}`: do what the hint says.',
        ],
    ),
    (
        "Find out what exists and what you have",
        [
            (
                "- `GET {url}/api/tools`: every tool with its `id` and `your_access` "
                "(none, pending, approved, denied, revoked, expired; `denial_reason` when denied)."
            ),
            "- `GET {url}/api/me`: who you are, and your approved, pending and denied tools.",
        ],
    ),
    (
        "Ask for access",
        [
            (
                "- `POST {url}/api/tools/{{id}}/request` with "
                '`{{"reason": "...", "duration": "8h"}}` (duration optional). Give a specific reason a '
                "human can judge: the task, why this tool, what you will do with it "
                '(e.g. "File the 3 failing checkout tests from today\'s run as issues in the WEB project"), '
                'not "I need access".'
            ),
            (
                "- The request waits for a human. Carry on with other work and check `GET {url}/api/tools` later. "
                "If it is denied, read `denial_reason`; do not resend the same request."
            ),
            (
                "- A tool that is missing from the list: `POST {url}/api/tools/suggest` with "
                '`{{"name": "...", "url": "https://...", "reason": "..."}}`. Other agents may back the same '
                "suggestion; when an admin adds the tool you get a pending request for it."
            ),
        ],
    ),
    (
        "Use a tool",
        [
            (
                "- Just before each use, `GET {url}/api/tools/{{id}}/credentials`. The response holds the "
                "`credential` and `instructions`: the company's guide for this tool. Follow the instructions."
            ),
            (
                "- Fetch again for every use instead of keeping the credential: access can be revoked or "
                "expire at any moment. A 403 means you no longer have access: stop and check `GET {url}/api/tools`."
            ),
            (
                "- When you learn something the instructions should say (a gotcha, a required field, a better way), "
                'suggest it: `POST {url}/api/tools/{{id}}/instructions/suggest` with `{{"learned": "...", "why": "..."}}`.'
            ),
        ],
    ),
    (
        "Getting requests right",
        [
            (
                "- `GET` on any of the POST endpoints above (no key needed) returns its JSON schema: "
                "read it when a request is refused as invalid, then correct the body."
            ),
            (
                "- On `429 Too Many Requests`, wait the number of seconds in the `Retry-After` header "
                "before trying again. Do not retry in a loop."
            ),
        ],
    ),
    (
        "Keep secrets secret",
        [
            (
                "- Never print, echo, log, store, commit or paste a credential or your AgentKey key: not in "
                "files, code, commits, issues, tickets, chat messages, command output, notes or your replies."
            ),
            (
                "- Pass a credential straight to the call that needs it (an HTTP header, or an environment "
                "variable for one command) and forget it. Do not cache it, write it to disk or hand it to "
                "another agent: fetch it again next time."
            ),
            "- If a credential or key was exposed by mistake, say so to a human at once so it can be rotated.",
        ],
    ),
]


MCP_TOOLS = ("list_tools", "request_access", "suggest_tool", "get_credential", "suggest_instructions")
_MCP_INTRO = (
    "AgentKey is also an MCP server at {url}/mcp (streamable HTTP, the same key). If your client "
    "speaks MCP (Claude Code, Cursor), add it with the block below (`.mcp.json` in the repository for "
    "Claude Code, `.cursor/mcp.json` for Cursor); the client reads the key from `{env_key}`. Its tools "
    "{tools} do exactly what the HTTP calls above do, with the same rules."
)


def mcp_config(public_url: str) -> str:
    """The ``mcp.json`` entry (Claude Code, Cursor) for this server: the key stays an env reference."""
    server = {
        "type": "http",
        "url": f"{public_url.rstrip('/')}/mcp",
        "headers": {"Authorization": f"Bearer ${{{ENV_KEY}}}"},
    }
    return json.dumps({"mcpServers": {"agentkey": server}}, indent=2)


def _mcp_intro(public_url: str) -> str:
    tools = ", ".join(f"`{name}`" for name in MCP_TOOLS)
    return _MCP_INTRO.format(url=public_url, env_key=ENV_KEY, tools=tools)


def _mcp_markdown(public_url: str, *, level: int) -> str:
    hashes = "#" * level
    return f"{hashes} Or over MCP\n\n{_mcp_intro(public_url)}\n\n```json\n{mcp_config(public_url)}\n```"


def _mcp_plain(public_url: str) -> str:
    return f"OR OVER MCP\n{_mcp_intro(public_url)}\n\n{mcp_config(public_url)}"


@dataclass(frozen=True)
class Snippet:
    slug: str
    title: str
    where: str
    text: str


def _fill(line: str, *, public_url: str, agent_name: str) -> str:
    return line.format(url=public_url, name=agent_name, env_key=ENV_KEY, env_url=ENV_URL)


def _body(lines: list[str], *, public_url: str, agent_name: str) -> str:
    """Bullets one per line; a paragraph gets a blank line after it."""
    out = ""
    for line in lines:
        text = _fill(line, public_url=public_url, agent_name=agent_name)
        out += text + ("\n" if text.startswith("- ") else "\n\n")
    return out.rstrip("\n")


def _markdown(public_url: str, agent_name: str, *, level: int) -> str:
    hashes = "#" * level
    sections = [
        f"{hashes} {title}\n\n{_body(lines, public_url=public_url, agent_name=agent_name)}"
        for title, lines in _SECTIONS
    ]
    return "\n\n".join([*sections, _mcp_markdown(public_url, level=level)])


def _plain(public_url: str, agent_name: str) -> str:
    sections = [
        f"{title.upper()}\n{_body(lines, public_url=public_url, agent_name=agent_name)}"
        for title, lines in _SECTIONS
    ]
    return "\n\n".join([*sections, _mcp_plain(public_url)])


def _claude_md(url: str, name: str) -> str:
    return f"## Tool access: AgentKey\n\n{_markdown(url, name, level=3)}\n"


def _agents_md(url: str, name: str) -> str:
    return f"## Credentials and tool access (AgentKey)\n\n{_markdown(url, name, level=3)}\n"


def _cursorrules(url: str, name: str) -> str:
    return f"Rules for getting tool credentials through AgentKey ({url}).\n\n{_plain(url, name)}\n"


def _tools_md(url: str, name: str) -> str:
    return (
        "# Tools\n\n"
        f"Every company tool is reached through AgentKey ({url}). The list of tools and your access "
        f"to each lives there, not in this file: ask `GET {url}/api/tools`.\n\n"
        f"{_markdown(url, name, level=2)}\n"
    )


def _system_prompt(url: str, name: str) -> str:
    return f"You are {name}.\n\n{_plain(url, name)}\n"


_FORMATS: list[tuple[str, str, str, Callable[[str, str], str]]] = [
    (
        "claude-md",
        "CLAUDE.md",
        "Append to CLAUDE.md in the repository the agent works in (Claude Code).",
        _claude_md,
    ),
    (
        "agents-md",
        "AGENTS.md",
        "Append to AGENTS.md (Codex, Jules, Aider and other agents that read it).",
        _agents_md,
    ),
    (
        "cursorrules",
        ".cursorrules",
        "Append to .cursorrules (or a rule under .cursor/rules/) for Cursor.",
        _cursorrules,
    ),
    ("tools-md", "TOOLS.md", "Put in TOOLS.md, the agent's list of tools.", _tools_md),
    ("system-prompt", "System prompt", "Add to the agent's system prompt.", _system_prompt),
]


def agent_snippets(*, public_url: str, agent_name: str) -> list[Snippet]:
    """The instructions in every supported format, for an agent named ``agent_name``."""
    url = public_url.rstrip("/")
    return [
        Snippet(slug=slug, title=title, where=where, text=render(url, agent_name))
        for slug, title, where, render in _FORMATS
    ]
