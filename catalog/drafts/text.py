"""A documentation page as readable text: headings, paragraphs, lists, tables and code kept; chrome dropped.

The output is light Markdown (``#`` headings, ``-`` items, fenced code) so both
a language model and the offline drafter can tell structure from prose.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString, PreformattedString

# Page chrome and anything interactive or executable: never part of the documentation text.
DROPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "footer",
        "aside",
        "form",
        "button",
        "select",
        "input",
        "textarea",
        "dialog",
        "iframe",
        "object",
        "embed",
        "svg",
        "canvas",
        "img",
        "picture",
        "video",
        "audio",
        "head",
        "link",
        "meta",
    }
)
DROPPED_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog"})
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = frozenset(
    {
        "address",
        "article",
        "blockquote",
        "body",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "header",
        "hr",
        "html",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        *HEADINGS,
    }
)
_BLOCK_NAMES = sorted(BLOCKS)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _dropped(tag: Tag) -> bool:
    if tag.name in DROPPED:
        return True
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    if str(tag.get("role", "")).lower() in DROPPED_ROLES:
        return True
    # A page-level header is site chrome (logo, menus); a header inside the article holds its title.
    return tag.name == "header" and tag.find_parent(("article", "main")) is None


def _inline(node: Tag) -> str:
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, PreformattedString):
            continue  # comments, CDATA, doctypes, processing instructions
        if isinstance(child, NavigableString):
            parts.append(str(child))
        elif isinstance(child, Tag) and not _dropped(child):
            if child.name == "code":
                parts.append(f"`{_collapse(child.get_text())}`")
            elif child.name == "br":
                parts.append(" ")
            else:
                parts.append(_inline(child))
    return "".join(parts)


def _code_block(pre: Tag) -> str | None:
    code = pre.get_text().replace("\r\n", "\n").strip("\n")
    if not code.strip():
        return None
    lines = [line.rstrip() for line in code.split("\n")]
    return "```\n" + "\n".join(lines) + "\n```"


class _Converter:
    def __init__(self) -> None:
        self.blocks: list[str] = []

    def walk(self, node: Tag, depth: int = 0) -> None:
        buffer: list[str] = []

        def flush() -> None:
            text = _collapse("".join(buffer))
            buffer.clear()
            if text:
                self.blocks.append(text)

        for child in node.children:
            if isinstance(child, PreformattedString):
                continue
            if isinstance(child, NavigableString):
                buffer.append(str(child))
                continue
            if not isinstance(child, Tag) or _dropped(child):
                continue
            name = child.name
            if name not in BLOCKS and child.find(_BLOCK_NAMES) is None:
                buffer.append(_inline(child) if name != "code" else f"`{_collapse(child.get_text())}`")
                continue
            flush()
            self.block(child, depth)
        flush()

    def block(self, tag: Tag, depth: int) -> None:
        name = tag.name
        if name in HEADINGS:
            title = _collapse(_inline(tag))
            if title:
                self.blocks.append("#" * HEADINGS[name] + " " + title)
        elif name == "pre":
            code = _code_block(tag)
            if code:
                self.blocks.append(code)
        elif name in ("ul", "ol"):
            self.items(tag, depth, ordered=name == "ol")
        elif name == "table":
            for row in tag.find_all("tr"):
                cells = [_collapse(_inline(c)) for c in row.find_all(("td", "th"), recursive=False)]
                if any(cells):
                    self.blocks.append("| " + " | ".join(cells) + " |")
        elif name == "blockquote":
            inner = _Converter()
            inner.walk(tag, depth)
            self.blocks.extend("> " + b for b in inner.blocks)
        elif name != "hr":
            self.walk(tag, depth)

    def items(self, listing: Tag, depth: int, *, ordered: bool) -> None:
        indent = "  " * depth
        for n, item in enumerate(listing.find_all("li", recursive=False), start=1):
            inner = _Converter()
            inner.walk(item, depth + 1)
            marker = f"{n}." if ordered else "-"
            if not inner.blocks:
                continue
            first, rest = inner.blocks[0], inner.blocks[1:]
            self.blocks.append(f"{indent}{marker} {first}")
            self.blocks.extend(rest)


def html_to_text(html: str) -> str:
    """The readable text of an HTML page, as light Markdown."""
    soup = BeautifulSoup(html, "html.parser")
    root = _content_root(soup)
    converter = _Converter()
    if isinstance(root, Tag):
        converter.walk(root)
    blocks = converter.blocks
    title = soup.title.get_text() if soup.title else ""
    if title.strip() and not any(b.startswith("# ") for b in blocks[:3]):
        blocks = ["# " + _collapse(title), *blocks]
    return _tidy("\n\n".join(blocks))


def _content_root(soup: BeautifulSoup) -> Tag | BeautifulSoup:
    """The article when it holds most of the main content (widgets around it are left out), else main."""
    main = soup.find("main")
    main = main if isinstance(main, Tag) else None
    articles = [a for a in (main or soup).find_all("article") if isinstance(a, Tag)]
    article = max(articles, key=lambda a: len(a.get_text()), default=None)
    if article is not None and (main is None or len(article.get_text()) * 2 >= len(main.get_text())):
        return article
    return main or soup.body or soup


def plain_to_text(text: str) -> str:
    """A text or Markdown page, with line endings and blank runs normalised."""
    return _tidy(text.replace("\r\n", "\n").replace("\r", "\n"))


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def useful_length(text: str) -> int:
    """How much prose a page has: letters and digits, ignoring markup, whitespace and punctuation."""
    return sum(1 for ch in text if ch.isalnum())
