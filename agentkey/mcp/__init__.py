"""The MCP endpoint (``/mcp``): the agent API as MCP tools, over streamable HTTP.

``server`` declares the tools (each calls the same function as its REST twin);
``mount`` authenticates the agent key and bridges the SDK's ASGI app into the
WSGI application, for the ``/mcp`` path only. See docs/mcp.md.
"""
