"""What a notification says, built at send time from the labels stored on the delivery.

Each channel escapes the labels its own way (``notifications.neutralize``); the
wording lives here once. Messages always end with the deep link: a decision is
made in the dashboard, behind sign-in and MFA, never by a button in a chat.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from notifications.models import Event
from notifications.neutralize import flatten

Escape = Callable[[object], str]

TITLES: dict[str, str] = {
    Event.ACCESS_REQUESTED: "{agent} requests access to {tool}",
    Event.TOOL_SUGGESTED: "{agent} suggests a new tool: {tool}",
    Event.GUIDE_SUGGESTED: "{agent} suggests an improvement to the {tool} usage guide",
    Event.ACCESS_APPROVED: "{decided_by} approved {agent}'s access to {tool}",
    Event.ACCESS_DENIED: "{decided_by} denied {agent}'s access to {tool}",
    Event.ACCESS_REVOKED: "{decided_by} revoked {agent}'s access to {tool}",
    Event.ACCESS_APPROVAL_RECORDED: "{decided_by} approved {agent}'s access to {tool} ({approvals} of {required})",
    Event.ACCESS_QUORUM_EXPIRED: "{agent}'s request for {tool} expired with {approvals} of {required} approvals",
    Event.AGENT_OWNER_DEPARTED: "{owner} left the organization: {agent} was {outcome}",
    Event.AGENT_VALIDITY_ENDED: "{agent}'s validity ended: it is suspended",
    Event.ACCESS_REVIEW_DUE: "{count} access grants are due for review",
    Event.ACCESS_REVIEW_EXPIRED: "{agent}'s access to {tool} was revoked: nobody recertified it",
    Event.ALERT_RAISED: "{severity} alert: {summary}",
    Event.TEST: "Test notification for {channel}",
}
#: Stand-ins when a label the title needs is missing.
FALLBACKS = {"agent": "An agent", "tool": "a tool", "decided_by": "Someone", "channel": "this channel"}
#: How the other labels are shown, in this order; any other label follows, by name.
FIELD_LABELS = {
    "reason": "Reason",
    "duration": "Duration",
    "expires": "Expires",
    "url": "URL",
    "learned": "Suggestion",
    "why": "Why",
    "backers": "Backers",
    "requested_by": "Requested by",
    "decided_by": "Decided by",
    "approvers": "Approved by",
}
REVIEW = "Review in AgentKey"
DASHBOARD_NOTE = "Decisions are made in the AgentKey dashboard, behind sign-in and MFA."


def _title_keys(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@dataclass(frozen=True)
class Notice:
    """One event as the channels render it. Every value is untrusted text."""

    event: str
    org: str
    subject: Mapping[str, str]
    link: str

    @classmethod
    def from_payload(cls, *, event: str, org: str, payload: Mapping[str, Any]) -> Notice:
        raw = payload.get("subject") or {}
        subject = {str(k): str(v) for k, v in raw.items() if v not in (None, "")}
        return cls(event=event, org=org, subject=subject, link=str(payload.get("link") or ""))

    @property
    def event_label(self) -> str:
        return str(dict(Event.choices).get(self.event, self.event))

    def _template(self) -> str:
        return TITLES.get(self.event, self.event_label)

    def title(self, escape: Escape = flatten) -> str:
        template = self._template()
        values = {
            key: escape(self.subject.get(key) or FALLBACKS.get(key, key)) for key in _title_keys(template)
        }
        return template.format(**values)

    def fields(self, escape: Escape = flatten) -> list[tuple[str, str]]:
        """(label, escaped value) for every label not already in the title."""
        used = set(_title_keys(self._template()))
        known = [key for key in FIELD_LABELS if key in self.subject and key not in used]
        others = sorted(key for key in self.subject if key not in FIELD_LABELS and key not in used)
        rows = []
        for key in [*known, *others]:
            label = FIELD_LABELS.get(key) or key.replace("_", " ").capitalize()
            rows.append((label, escape(self.subject[key])))
        return rows

    def data(self) -> dict[str, str]:
        """The labels as a generic webhook receives them: flattened and capped, plus the link."""
        data = {key: flatten(value) for key, value in self.subject.items()}
        data["organization"] = flatten(self.org)
        data["link"] = self.link
        return data
