"""The drafter used when no language model is configured: extraction, not generation.

It reads the page's text (light Markdown from ``text.html_to_text``) and lifts
out what an agent needs to call the API: base URL(s), the auth header and its
format, how the admin creates the credential, scopes and permissions, rate
limits, conventions (version headers, content types), an example request and
pitfalls. Every line comes from the page; credentials in examples are replaced
by ``{{credential}}``. It is a starting point for the admin's review, as is a
model's draft.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from catalog.drafts.prompt import Subject

PLACEHOLDER = "{{credential}}"
NOT_STATED = "Not stated in the documentation."
MAX_ITEM = 320


@dataclass(frozen=True)
class Block:
    kind: str  # heading | code | item | para | row
    text: str
    section: str  # the nearest heading above, lowercased


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                code.append(lines[i])
                i += 1
            blocks.append(Block("code", "\n".join(code).strip("\n"), section))
            i += 1
            continue
        stripped = re.sub(r"^(?:>\s?)+", "", line.strip()).strip()
        if not stripped:
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            section = heading.group(2).strip().lower()
            blocks.append(Block("heading", heading.group(2).strip(), section))
        elif re.match(r"^(?:[-*+]|\d+[.)])\s+", stripped):
            blocks.append(Block("item", re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", stripped), section))
        elif stripped.startswith("|"):
            blocks.append(Block("row", stripped, section))
        else:
            blocks.append(Block("para", stripped, section))
        i += 1
    return blocks


# --- secrets never reach the draft -----------------------------------------------------------------

_KNOWN_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{16,}"
    r"|sk_(?:live|test)_[A-Za-z0-9]{10,}|rk_(?:live|test)_[A-Za-z0-9]{10,}|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_\-]{20,}|lin_(?:api|oauth)_[A-Za-z0-9]{20,})"
)
_LONG_RANDOM = re.compile(
    r"(?<![\w/.-])(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{32,}(?![\w/.-])"
)


def scrub(text: str) -> str:
    """Replace anything shaped like a real token with the placeholder."""
    return _LONG_RANDOM.sub(PLACEHOLDER, _KNOWN_TOKENS.sub(PLACEHOLDER, text))


# --- base URLs -------------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s\"'<>`)\]},|\\]+")
_VERSION = re.compile(r"^(?:v\d+(?:\.\d+)?|api|rest)$", re.IGNORECASE)


def api_base(url: str) -> str | None:
    """The API's base for a URL seen in the docs: scheme, host and the /api or /vN prefix, if any."""
    try:
        parts = urlsplit(url.rstrip(".,;:"))
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or "{" in host or host.startswith("docs."):
        return None
    prefix: list[str] = []
    for segment in [s for s in parts.path.split("/") if s]:
        if not _VERSION.match(segment):
            break
        prefix.append(segment)
    port = f":{parts.port}" if parts.port else ""
    if prefix:
        return f"{parts.scheme}://{host}{port}/" + "/".join(prefix)
    if host.startswith("api.") or ".api." in host:
        return f"{parts.scheme}://{host}{port}"
    return None


def base_urls(blocks: list[Block]) -> list[str]:
    counts: Counter[str] = Counter()
    for block in blocks:
        weight = 2 if block.kind == "code" else 1
        for url in _URL.findall(block.text):
            base = api_base(url)
            if base:
                counts[base] += weight
    # Versioned bases are the ones to call; a bare host is kept when nothing better appears.
    ranked = sorted(counts, key=lambda b: (-counts[b], -b.count("/"), b))
    return ranked[:3]


# --- auth headers ----------------------------------------------------------------------------------

_AUTH_HEADER = re.compile(
    r"(?i)(?<![\w-])(authorization|proxy-authorization|private-token|job-token|x-api-key|api-key|apikey"
    r"|x-auth-token|x-access-token|[a-z][a-z0-9]*(?:-[a-z0-9]+)*-(?:token|api-key|key))\s*:\s*"
    r"(bearer|token|basic|apikey|api-key|key|bot)?\s*([^\s\"'\\]*)"
)
_QUERY_TOKEN = re.compile(
    r"[?&](access_token|private_token|api_key|apikey|token|key)=([^\s&\"'#]+)", re.IGNORECASE
)
_HEADER_FLAG = re.compile(r"(?:--header|-H)\s+[\"']([A-Za-z][A-Za-z0-9-]*)\s*:\s*([^\"']*)[\"']")


@dataclass(frozen=True)
class AuthHeader:
    name: str
    scheme: str

    def format(self) -> str:
        scheme = f"{self.scheme} " if self.scheme else ""
        return f"{self.name}: {scheme}{PLACEHOLDER}"


def _canonical_scheme(scheme: str) -> str:
    lowered = scheme.lower()
    return {"bearer": "Bearer", "basic": "Basic", "bot": "Bot"}.get(lowered, scheme)


def auth_headers(blocks: list[Block]) -> list[AuthHeader]:
    counts: Counter[tuple[str, str]] = Counter()
    first_seen: dict[tuple[str, str], AuthHeader] = {}
    for block in blocks:
        for name, scheme, _value in _AUTH_HEADER.findall(block.text):
            if name.lower() == "authorization" and not scheme:
                continue  # "Authorization: ..." without a scheme is prose, not a format
            key = (name.lower(), scheme.lower())
            counts[key] += 2 if block.kind == "code" else 1
            first_seen.setdefault(key, AuthHeader(name=name, scheme=_canonical_scheme(scheme)))
    ranked = sorted(counts, key=lambda k: (-counts[k], k[0] != "authorization", k))
    return [first_seen[k] for k in ranked]


def query_parameters(blocks: list[Block]) -> list[str]:
    seen: list[str] = []
    for block in blocks:
        for name, _value in _QUERY_TOKEN.findall(block.text):
            if name.lower() not in seen:
                seen.append(name.lower())
    return seen


_CONVENTION = re.compile(r"(?i)^(x-[\w-]+|accept|content-type|user-agent|[\w-]*version[\w-]*)$")


def convention_headers(blocks: list[Block]) -> list[str]:
    """Non-credential headers the examples send (API version, media type)."""
    seen: dict[str, str] = {}
    for block in blocks:
        if block.kind != "code":
            continue
        for name, value in _HEADER_FLAG.findall(block.text):
            if _AUTH_HEADER.match(f"{name}: x") or not _CONVENTION.match(name) or not value.strip():
                continue
            if name.lower() in seen:
                continue
            seen[name.lower()] = f"{name}: {scrub(value.strip())}"
    return list(seen.values())[:4]


def with_placeholder(code: str) -> str:
    """An example with every credential value replaced by the placeholder."""

    def header(match: re.Match[str]) -> str:
        name, scheme, value = match.group(1), match.group(2) or "", match.group(3)
        if not value:
            return match.group(0)
        sep = " " if scheme else ""
        return f"{name}: {scheme}{sep}{PLACEHOLDER}"

    code = _AUTH_HEADER.sub(header, code)
    code = _QUERY_TOKEN.sub(lambda m: m.group(0)[0] + f"{m.group(1)}={PLACEHOLDER}", code)
    code = re.sub(r"(--user|-u)\s+([\"']?)[^\s\"':]+:[^\s\"']+\2", rf"\1 \2USERNAME:{PLACEHOLDER}\2", code)
    return scrub(code)


# --- prose -----------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'`(*\[])")


def sentences(blocks: list[Block]) -> Iterator[tuple[Block, str]]:
    for block in blocks:
        if block.kind not in ("para", "item"):
            continue
        for part in _SENTENCE_END.split(block.text):
            sentence = part.strip()
            if 20 <= len(sentence) <= 600:
                yield block, sentence


def _clip(text: str) -> str:
    text = scrub(" ".join(text.split()))
    if text.endswith(":"):
        text = text[:-1].rstrip() + "."
    return text if len(text) <= MAX_ITEM else text[: MAX_ITEM - 1].rstrip() + "…"


CREATE = re.compile(
    r"(?i)\b(creat|generat|regist|obtain|issu)\w*\b.{0,80}\b(tokens?|keys?|secrets?|credentials?|app(?:lication)?s?)\b"
    r"|\b(tokens?|keys?|secrets?|credentials?)\b.{0,60}\b(creat|generat)\w*"
)
CREATE_SECTION = re.compile(
    r"(?i)(creat|generat|obtain|regist|managing|get(ting)?\s+(an?|your)).*(token|key|app|credential|secret|application)"
)
SCOPES = re.compile(r"(?i)\bscopes?\b|\bpermissions?\b")
RATE = re.compile(
    r"(?i)rate[ -]?limit|requests? per (hour|minute|second|day)|\bper (hour|minute)\b|\b429\b|retry-after|x-ratelimit|throttl"
)
PITFALL = re.compile(
    r"(?i)\b(401|403|404)\b|\bexpir\w*|\binvalid\b|\bsso\b|single sign-on|\brevok\w*|\bnot supported\b|\bmust\b"
)


def _pick(
    blocks: list[Block],
    pattern: re.Pattern[str],
    used: set[str],
    limit: int,
    *,
    sections: re.Pattern[str] | None = None,
) -> list[str]:
    picked: list[str] = []
    for block, sentence in sentences(blocks):
        in_section = sections is not None and bool(sections.search(block.section))
        if not (pattern.search(sentence) or (in_section and block.kind == "item")):
            continue
        item = _clip(sentence)
        if item in used:
            continue
        used.add(item)
        picked.append(item)
        if len(picked) >= limit:
            break
    return picked


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def scope_rows(blocks: list[Block], used: set[str], limit: int) -> list[str]:
    """Rows of a table whose header names scopes or permissions: "`api`: what it allows"."""
    picked: list[str] = []
    header: list[str] | None = None
    for block in blocks:
        if block.kind != "row":
            header = None
            continue
        cells = _cells(block.text)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if not any("scope" in h or "permission" in h for h in header) or len(cells) < 2 or not cells[0]:
            continue
        item = _clip(f"{cells[0]}: {cells[-1]}")
        if item not in used and not re.fullmatch(r"[-: ]*", cells[0]):
            used.add(item)
            picked.append(item)
        if len(picked) >= limit:
            break
    return picked


def example_request(blocks: list[Block], preferred: AuthHeader | None) -> str | None:
    candidates = [
        b.text
        for b in blocks
        if b.kind == "code"
        and re.search(r"\bcurl\b|^(GET|POST|PUT|PATCH|DELETE) ", b.text, re.M)
        and _URL.search(b.text)
    ]
    if not candidates:
        return None

    def score(code: str) -> tuple[int, int]:
        uses_header = bool(preferred and preferred.name.lower() in code.lower())
        return (0 if uses_header else 1, len(code))

    best = min(candidates, key=score)
    return with_placeholder(best)[:1500]


# --- the guide -------------------------------------------------------------------------------------


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else NOT_STATED


def draft(subject: Subject, page_text: str) -> Iterator[str]:
    """The guide, a section at a time (so the browser sees it arrive like a model's answer)."""
    blocks = parse(page_text)
    bases = base_urls(blocks)
    headers = auth_headers(blocks)
    primary = headers[0] if headers else None
    used: set[str] = set()
    title = " ".join(subject.name.split()) or "This tool"

    yield (
        f"# {title}: usage guide for agents\n\n"
        f"_Drafted offline (no language model) from {subject.source_url}. Every line was extracted from "
        "that page: check, trim and correct it before applying it as the usage guide._\n\n"
    )
    yield "## Base URL\n\n" + _bullets([f"`{b}`" for b in bases]) + "\n\n"

    auth: list[str] = []
    if primary is not None:
        auth.append(f"Send the credential in the `{primary.name}` header: `{primary.format()}`")
        others = [h.format() for h in headers[1:4]]
        if others:
            auth.append("The page also documents: " + ", ".join(f"`{o}`" for o in others))
    params = query_parameters(blocks)
    if params:
        auth.append(
            "It also accepts the credential as a query parameter ("
            + ", ".join(f"`{p}`" for p in params[:3])
            + "); prefer the header, because URLs end up in logs."
        )
    auth.append(f"Use `{PLACEHOLDER}` where the credential goes; AgentKey returns its value on each fetch.")
    yield "## Authentication\n\n" + _bullets(auth) + "\n\n"

    creating = _pick(blocks, CREATE, used, 8, sections=CREATE_SECTION)
    yield "## Getting the credential (for the admin)\n\n" + _bullets(creating) + "\n\n"
    rows = scope_rows(blocks, used, 10)
    scopes = rows + _pick(blocks, SCOPES, used, 4 if rows else 8)
    yield "## Scopes and permissions\n\n" + _bullets(scopes) + "\n\n"
    yield "## Rate limits\n\n" + _bullets(_pick(blocks, RATE, used, 6)) + "\n\n"
    conventions = [f"Send `{h}`" for h in convention_headers(blocks)]
    yield "## Conventions\n\n" + _bullets(conventions) + "\n\n"
    example = example_request(blocks, primary)
    yield "## Example request\n\n" + (f"```shell\n{example}\n```" if example else NOT_STATED) + "\n\n"
    yield "## Pitfalls\n\n" + _bullets(_pick(blocks, PITFALL, used, 6)) + "\n"
