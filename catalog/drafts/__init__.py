"""AI setup-guide drafts: a documentation page in, a usage guide for agents out, reviewed by an admin.

``services`` holds the state changes (start, apply, discard), ``generation`` the
Celery task's body (fetch, convert, draft, stream), ``fetch`` the documentation
page through the SSRF-safe client, ``text`` the HTML-to-text conversion,
``prompt`` and ``llm`` the model call, ``offline`` the drafter used without a model.
"""
