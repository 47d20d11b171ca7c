"""Shared kernel: errors, ids, request context, rate limiting, HTTP plumbing.

Nothing here imports any AgentKey app; every app may import from here.
"""
