"""Catalog as code: a tool catalog as a YAML or JSON file, keyed by ``config_key``.

The file never carries a secret: no credential, no secret id, no credential
dates, no webhook. ``catalog_export`` writes it; ``parse_catalog`` checks a file
and says where it is wrong (line and field); ``catalog_plan`` compares it with
an organization's catalog (created / changed / unchanged / not in the file).
``grants.catalog_import.catalog_import`` applies a plan through the tool
services, so every change is audited. The built-in template library
(``catalog/library/templates.yaml``) is a file of the same format.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.utils.text import slugify

from accounts.models import Organization
from agentkey.core.errors import FieldError, Message, ValidationFailed
from catalog.models import MAX_REQUIRED_APPROVALS, AccessMode, AuthType, CredentialMode, InjectAs, Tool
from catalog.normalize import normalize_name, normalize_url
from catalog.selectors import tools_for_org
from catalog.services import proxy_changes

FORMAT_VERSION = 1
FORMATS = ("yaml", "json")
LIBRARY = Path(__file__).resolve().parent / "library" / "templates.yaml"

# Written by export, in this order; every one but config_key and name is optional on import.
TOOL_FIELDS = (
    "name",
    "description",
    "url",
    "auth_type",
    "credential_mode",
    "access_mode",
    "upstream_origin",
    "inject_as",
    "inject_name",
    "inject_template",
    "required_approvals",
    "separation_of_duties",
    "is_canary",
    "usage_guide",
)
# Fields that are not text: whole numbers within a range, and yes/no flags.
NUMBERS: dict[str, tuple[int, int]] = {"required_approvals": (1, MAX_REQUIRED_APPROVALS)}
FLAGS = frozenset({"separation_of_duties", "is_canary"})
CHOICES: dict[str, list[str]] = {
    "auth_type": list(AuthType.values),
    "credential_mode": list(CredentialMode.values),
    "access_mode": list(AccessMode.values),
    "inject_as": list(InjectAs.values),
}
LIMITS = {
    "name": 120,
    "description": 2000,
    "url": 500,
    "upstream_origin": 300,
    "inject_name": 100,
    "inject_template": 200,
    "usage_guide": 20000,
}
# Shown to the admin who adds a tool from a template; never stored on the tool.
SETUP_FIELD = "credential_setup"
# Keys that would carry a secret: refused by name, so a hand-written file cannot smuggle one in.
SECRET_KEYS = frozenset(
    {"credential", "secret", "secret_id", "api_key", "token", "password", "webhook", "webhook_url"}
)

INVALID_FILE_HINT = "Fix the file and run the import again; nothing was imported."
MAX_REPORTED = 20


@dataclass(frozen=True)
class ToolSpec:
    """One tool of a catalog file: the fields the file gives (others keep their value)."""

    config_key: str
    values: dict[str, Any]
    credential_setup: tuple[str, ...] = ()
    where: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"config_key": self.config_key, **self.values}


# --- export ----------------------------------------------------------------------------------------


def tool_document(tool: Tool) -> dict[str, Any]:
    return {"config_key": tool.config_key, **{name: getattr(tool, name) for name in TOOL_FIELDS}}


def catalog_export(org: Organization) -> dict[str, Any]:
    """The organization's catalog as a plain document (no secret, no id, no date)."""
    tools = tools_for_org(org.id).order_by("config_key")
    return {"version": FORMAT_VERSION, "tools": [tool_document(t) for t in tools]}


class _Dumper(yaml.SafeDumper):
    """Multi-line text (usage guides) as readable ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(document: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# --- parse -----------------------------------------------------------------------------------------


def _invalid(problems: list[FieldError]) -> ValidationFailed:
    shown = problems[:MAX_REPORTED]
    lines = [f"{p.field}: {p.message}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"... and {len(problems) - len(shown)} more problems.")
    message = Message("The catalog file is invalid:\n" + "\n".join(lines), INVALID_FILE_HINT)
    return ValidationFailed(message, details=problems)


def _load(text: str, fmt: str) -> tuple[Any, dict[int, int]]:
    """The document and, for YAML, the line of each tool (by position in the list)."""
    if fmt == "json":
        try:
            return json.loads(text), {}
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise _invalid([FieldError(where, f"not valid JSON ({exc.msg}).")]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise _invalid([FieldError(where, f"not valid YAML ({problem}).")]) from None
    finally:
        loader.dispose()
    lines: dict[int, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "tools" and isinstance(value, yaml.SequenceNode):
                lines = {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return document, lines


def _check_typed(name: str, value: object, at: str, problems: list[FieldError]) -> object | None:
    if name in FLAGS:
        if isinstance(value, bool):
            return value
        problems.append(FieldError(f"{at}.{name}", "must be true or false."))
        return None
    low, high = NUMBERS[name]
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    problems.append(FieldError(f"{at}.{name}", f"must be a whole number from {low} to {high}."))
    return None


def _check_value(name: str, value: object, at: str, problems: list[FieldError]) -> object | None:
    if name in NUMBERS or name in FLAGS:
        return _check_typed(name, value, at, problems)
    if not isinstance(value, str):
        kind = "nothing" if value is None else type(value).__name__
        problems.append(FieldError(f"{at}.{name}", f"must be text, not {kind}. Quote it if needed."))
        return None
    limit = LIMITS.get(name)
    if limit is not None and len(value) > limit:
        problems.append(FieldError(f"{at}.{name}", f"is longer than {limit} characters."))
    if name in CHOICES and value not in CHOICES[name]:
        problems.append(
            FieldError(f"{at}.{name}", f"{value[:40]!r} is not one of: {', '.join(CHOICES[name])}.")
        )
    if name == "name" and not normalize_name(value):
        problems.append(FieldError(f"{at}.name", "needs letters or digits."))
    if name == "url" and value.strip() and normalize_url(value) is None:
        problems.append(FieldError(f"{at}.url", "is not an http(s) URL such as https://linear.app."))
    return value


def _check_tool(item: object, at: str, problems: list[FieldError]) -> ToolSpec | None:
    if not isinstance(item, dict):
        problems.append(FieldError(at, "must be a mapping of fields (config_key, name, ...)."))
        return None
    before = len(problems)
    for key in item:
        if str(key).lower() in SECRET_KEYS:
            problems.append(
                FieldError(
                    f"{at}.{key}",
                    "catalog files never carry secrets. Remove it and add the credential with "
                    "rotatetoolcredential or in the console.",
                )
            )
        elif key not in ("config_key", SETUP_FIELD, *TOOL_FIELDS):
            allowed = ", ".join(("config_key", *TOOL_FIELDS))
            problems.append(FieldError(f"{at}.{key}", f"unknown field. Known fields: {allowed}."))
    key = item.get("config_key")
    if key is None:
        problems.append(FieldError(f"{at}.config_key", "is required (a slug such as linear)."))
    elif not isinstance(key, str) or not key or slugify(key) != key or len(key) > 80:
        problems.append(
            FieldError(f"{at}.config_key", f"{str(key)[:80]!r} must be a slug: lowercase letters, digits, -.")
        )
    if "name" not in item:
        problems.append(FieldError(f"{at}.name", "is required."))
    values: dict[str, Any] = {}
    for name in TOOL_FIELDS:
        if name in item:
            value = _check_value(name, item[name], at, problems)
            if value is not None:
                values[name] = value
    setup = item.get(SETUP_FIELD, [])
    if not isinstance(setup, list) or not all(isinstance(step, str) for step in setup):
        problems.append(FieldError(f"{at}.{SETUP_FIELD}", "must be a list of text steps."))
        setup = []
    if len(problems) > before:
        return None
    return ToolSpec(config_key=str(key), values=values, credential_setup=tuple(setup), where=at)


def parse_catalog(text: str, fmt: str) -> list[ToolSpec]:
    """Check a catalog file; raise ValidationFailed listing every problem with its line or field."""
    document, lines = _load(text, fmt)
    if not isinstance(document, dict) or not isinstance(document.get("tools"), list):
        raise _invalid([FieldError("file", "must be a mapping with a list under 'tools' (version: 1).")])
    problems: list[FieldError] = []
    if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        problems.append(FieldError("version", f"must be {FORMAT_VERSION}."))
    for key in document:
        if key not in ("version", "tools"):
            problems.append(FieldError(str(key), "unknown top-level key (only version and tools)."))
    specs: list[ToolSpec] = []
    for i, item in enumerate(document["tools"]):
        at = (f"line {lines[i]}, " if i in lines else "") + f"tools[{i}]"
        spec = _check_tool(item, at, problems)
        if spec is not None:
            specs.append(spec)
    seen_keys: dict[str, str] = {}
    seen_names: dict[str, str] = {}
    for spec in specs:
        if spec.config_key in seen_keys:
            problems.append(
                FieldError(
                    f"{spec.where}.config_key",
                    f"{spec.config_key!r} is also used at {seen_keys[spec.config_key]}; keys are unique.",
                )
            )
        seen_keys.setdefault(spec.config_key, spec.where)
        normalized = normalize_name(spec.values["name"])
        if normalized in seen_names:
            problems.append(
                FieldError(f"{spec.where}.name", f"is the same tool name as {seen_names[normalized]}.")
            )
        seen_names.setdefault(normalized, spec.where)
    if problems:
        raise _invalid(problems)
    return specs


def guess_format(path: str, text: str) -> str:
    if path.lower().endswith(".json"):
        return "json"
    if path.lower().endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


# --- the template library --------------------------------------------------------------------------


@functools.cache
def template_library() -> dict[str, ToolSpec]:
    """The built-in templates by config_key (GitHub, Linear, Stripe, ...)."""
    specs = parse_catalog(LIBRARY.read_text(encoding="utf-8"), "yaml")
    return {spec.config_key: spec for spec in specs}


UNKNOWN_TEMPLATE = Message(
    "No built-in template {key!r}.", "Known templates: {known}. Separate several with commas."
)


def templates(keys: list[str]) -> list[ToolSpec]:
    library = template_library()
    for key in keys:
        if key not in library:
            message = UNKNOWN_TEMPLATE.format(key=key, known=", ".join(sorted(library)))
            raise ValidationFailed(message, details=[FieldError("template", message.error)])
    return [library[key] for key in dict.fromkeys(keys)]


# --- the plan (what an import would do) -----------------------------------------------------------

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
MODE_FIXED = Message(
    "{key}: credential_mode cannot change from {old} to {new} on an existing tool.",
    "Keep credential_mode as it is in the file, or give the tool a new config_key.",
)
NAME_TAKEN = Message(
    "{key}: the name {name!r} belongs to another tool of the organization ({other}).",
    "Rename one of them, or use that tool's config_key in the file.",
)


@dataclass(frozen=True)
class Step:
    spec: ToolSpec
    action: str
    fields: tuple[str, ...] = ()
    tool: Tool | None = None


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)

    def keys(self, action: str) -> list[str]:
        return [s.spec.config_key for s in self.steps if s.action == action]

    def summary(self) -> dict[str, Any]:
        return {
            "created": self.keys(CREATE),
            "changed": {s.spec.config_key: list(s.fields) for s in self.steps if s.action == UPDATE},
            "unchanged": self.keys(UNCHANGED),
            "not_in_file": self.not_in_file,
        }


PROXY_FIELDS = ("access_mode", "upstream_origin", "inject_as", "inject_name", "inject_template")


def _comparable(name: str, value: Any) -> Any:
    """A file value as the tool services would store it, to compare with the stored one
    (the proxy fields are compared by the services themselves, see ``_changed``)."""
    if not isinstance(value, str):
        return value
    if name == "name":
        return " ".join(value.split())
    if name == "url":
        parsed = normalize_url(value) if value.strip() else None
        return parsed.url if parsed else ""
    if name == "description":
        return value.strip()
    return value


def _changed(tool: Tool, spec: ToolSpec, problems: list[FieldError]) -> tuple[str, ...]:
    """The fields of ``spec`` that importing it would change.

    The proxy fields go through the update service's own cleaning (``catalog.upstream``: origin
    form, default port, injection defaults), so the plan names exactly what ``tool_update`` will
    change; a value it would refuse is a problem of the file, reported before anything is written.
    """
    try:
        proxy = proxy_changes(tool, **{f: spec.values.get(f) for f in PROXY_FIELDS})
    except ValidationFailed as exc:
        problems.extend(FieldError(f"{spec.where}.{d.field}", d.message) for d in exc.details)
        proxy = {}
    return tuple(
        name
        for name, value in spec.values.items()
        if (
            name in proxy
            if name in PROXY_FIELDS
            else _comparable(name, value) != _comparable(name, getattr(tool, name))
        )
    )


def catalog_plan(*, org: Organization, specs: list[ToolSpec]) -> Plan:
    """What importing ``specs`` into ``org`` would do. Reads only; nothing is ever deleted."""
    existing = {t.config_key: t for t in tools_for_org(org.id)}
    by_name = {t.normalized_name: t for t in existing.values()}
    plan = Plan()
    problems: list[FieldError] = []
    for spec in specs:
        tool = existing.get(spec.config_key)
        owner = by_name.get(normalize_name(spec.values.get("name", "")))
        if owner is not None and owner.config_key != spec.config_key:
            msg = NAME_TAKEN.format(key=spec.config_key, name=spec.values["name"], other=owner.config_key)
            problems.append(FieldError(f"{spec.where}.name", msg.error))
        if tool is None:
            plan.steps.append(Step(spec=spec, action=CREATE, fields=tuple(spec.values)))
            continue
        mode = spec.values.get("credential_mode", tool.credential_mode)
        if mode != tool.credential_mode:
            msg = MODE_FIXED.format(key=spec.config_key, old=tool.credential_mode, new=mode)
            problems.append(FieldError(f"{spec.where}.credential_mode", msg.error))
        changed = tuple(f for f in _changed(tool, spec, problems) if f != "credential_mode")
        plan.steps.append(Step(spec=spec, action=UPDATE if changed else UNCHANGED, fields=changed, tool=tool))
    if problems:
        raise _invalid(problems)
    in_file = {s.config_key for s in specs}
    plan.not_in_file = sorted(k for k in existing if k not in in_file)
    return plan
