"""The issue #7 benchmark harness: AgentKey's production stack and OpenBao under wrk.

Entry point: ``bench/run.py`` (``make bench``); see docs/performance.md.
"""
