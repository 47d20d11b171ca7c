"""A documentation page as readable text: the article kept, the page chrome dropped."""

from __future__ import annotations

from catalog.drafts.text import html_to_text, plain_to_text, useful_length
from tests.catalog.drafts.support import DOCS, GITHUB_PAGE, GITLAB_TOKENS_PAGE

PAGE = """<!doctype html><html><head><title>Widgets API</title><style>body { color: red }</style>
<script>var apiKey = "do-not-index";</script></head>
<body>
<header><a href="/">Widgets</a><nav><a href="/pricing">Pricing</a></nav></header>
<div class="layout">
<aside><ul><li>Sidebar link</li></ul></aside>
<main>
  <article>
    <h1>Authentication</h1>
    <p>Send   your key
       in the <code>Authorization</code> header.</p>
    <h2>Steps</h2>
    <ol><li>Open <b>Settings</b>.</li><li>Click <em>Create key</em>.<ul><li>Pick scopes.</li></ul></li></ol>
    <pre><code>curl https://api.widgets.example/v1/me \\
  -H "Authorization: Bearer KEY"</code></pre>
    <table><tr><th>Scope</th><th>Access</th></tr><tr><td><code>read</code></td><td>Read only</td></tr></table>
    <form><input name="q"><button>Search</button></form>
    <div hidden>Hidden text</div>
    <!-- a comment -->
  </article>
</main>
</div>
<footer>© Widgets Inc. <a href="/terms">Terms</a></footer>
<noscript>Enable JavaScript</noscript>
</body></html>"""


def test_chrome_scripts_styles_and_forms_are_dropped():
    text = html_to_text(PAGE)

    for gone in (
        "do-not-index",
        "color: red",
        "Pricing",
        "Sidebar link",
        "Terms",
        "Search",
        "Hidden text",
        "a comment",
        "Enable JavaScript",
    ):
        assert gone not in text


def test_headings_lists_code_and_tables_are_kept_as_light_markdown():
    text = html_to_text(PAGE)

    assert "# Authentication" in text
    assert "## Steps" in text
    assert "1. Open Settings." in text
    assert "2. Click Create key." in text
    assert "  - Pick scopes." in text
    assert '```\ncurl https://api.widgets.example/v1/me \\\n  -H "Authorization: Bearer KEY"\n```' in text
    assert "| `read` | Read only |" in text


def test_whitespace_in_prose_is_collapsed():
    assert "Send your key in the `Authorization` header." in html_to_text(PAGE)


def test_the_title_is_used_when_the_article_has_no_heading():
    text = html_to_text("<html><head><title>Tokens</title></head><body><p>Use tokens.</p></body></html>")

    assert text.startswith("# Tokens")


def test_the_saved_github_page_reads_as_its_article():
    text = html_to_text((DOCS / GITHUB_PAGE).read_text())

    assert text.startswith("# Authenticating to the REST API")
    assert '--header "Authorization: Bearer YOUR-TOKEN"' in text
    assert "Was this page helpful?" not in text  # a feedback widget outside the article
    assert "Get started" not in text  # the site menu
    assert useful_length(text) > 5000


def test_the_saved_gitlab_page_keeps_its_scope_table():
    text = html_to_text((DOCS / GITLAB_TOKENS_PAGE).read_text())

    assert "| `read_api` |" in text
    assert "Troubleshooting" not in text  # an HTML comment in the source


def test_plain_text_pages_are_normalised():
    assert plain_to_text("a\r\n\r\n\r\n\r\nb  \n") == "a\n\nb"
