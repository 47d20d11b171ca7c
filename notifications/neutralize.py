"""Make agent-supplied text inert in each channel's markup.

Agents write the reasons, names and suggestions that notifications quote. In
Slack or Discord, such text could otherwise ping the whole channel
(``<!channel>``, ``@everyone``), mention people (``<@U123>``), or dress a link
to an attacker's page as something trustworthy (``<https://evil|Approve>``,
``[Approve](https://evil)``). Every value is first flattened to one line
without control characters and capped, then escaped for its channel.
"""

from __future__ import annotations

import re
import unicodedata

FIELD_LIMIT = 300
ELLIPSIS = "…"
ZERO_WIDTH_SPACE = "\u200b"

# Control (Cc), format (Cf: zero-width and bidirectional overrides) and line/paragraph separators.
_FLATTENED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_DISCORD_SPECIALS = re.compile(r"([\\*_~`|\[\]()<>])")
_DISCORD_BROADCAST = re.compile(r"@(everyone|here)", re.IGNORECASE)


def flatten(value: object, *, limit: int = FIELD_LIMIT) -> str:
    """One line, no control or invisible formatting characters, at most ``limit`` characters."""
    text = "".join(" " if unicodedata.category(ch) in _FLATTENED_CATEGORIES else ch for ch in str(value))
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


def slack(value: object) -> str:
    """Slack's own escaping: with &, < and > escaped no mention, channel ping or link can form."""
    return flatten(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def discord(value: object) -> str:
    """Markdown escaped with backslashes (links, mentions written as <@id>, <#id>, <@&id>), and
    @everyone / @here broken with a zero-width space. ``allowed_mentions`` stops pings as well."""
    text = _DISCORD_SPECIALS.sub(r"\\\1", flatten(value))
    return _DISCORD_BROADCAST.sub(lambda m: "@" + ZERO_WIDTH_SPACE + m.group(1), text)
