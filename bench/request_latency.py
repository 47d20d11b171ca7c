"""Does notification delivery slow an agent's ``POST /api/tools/{id}/request``? (issue #4)

    .venv/bin/python bench/request_latency.py                 # 200 requests per side, 2 s receiver
    .venv/bin/python bench/request_latency.py --requests 400 --sleep 5

Starts the production stack (``make serve``: gunicorn, production settings, a fresh
PostgreSQL database, Redis) and a Celery worker on the same Redis, plus a webhook
receiver on 127.0.0.1 that sleeps ``--sleep`` seconds before answering. Two
organizations, made through the services:

- *quiet*: no notification channel and email off: the reference;
- *notified*: two generic (signed) webhook channels pointing at the sleeping
  receiver, subscribed to new requests; every request writes two deliveries.

Each agent requests access to a fresh tool each time (so every request creates a
grant, an audit event and, for *notified*, its deliveries), alternating quiet and
notified so both see the same machine. Client-side latency over keep-alive
connections; medians, p90 and p99 in milliseconds, and the ratio notified / quiet.
Afterwards it waits until the receiver has every delivery (nothing lost) unless
``--no-wait``. Exits non-zero if the notified median reaches 50 ms. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.support.live import LiveStack, live_stack  # noqa: E402

TARGET_MS = 50.0
WORKER_OPTIONS = ["--pool", "threads", "--concurrency", "16", "--without-gossip", "--without-mingle"]

SEED = """
import json
from accounts.models import User
from accounts.permissions import Operator
from accounts.services import agent_create, org_create
from grants.services import tool_add
from notifications.models import EmailSettings
from notifications.services import endpoint_create

operator = Operator(label="bench")
out = {}
for side, channels in (("quiet", 0), ("notified", 2)):
    owner = User.objects.create_user(f"owner@{side}.bench.example")
    org = org_create(name=f"Bench {side}", owner=owner)
    EmailSettings.objects.create(org=org, enabled=False, events=[])
    for n in range(channels):
        endpoint_create(
            org=org, actor=operator, name=f"receiver {n}", kind="generic",
            url="RECEIVER/hook/" + str(n), events=["access.requested"],
        )
    issued = agent_create(org=org, name=f"{side}-agent", actor=operator, owner=owner)
    tools = [
        str(tool_add(org=org, actor=operator, name=f"{side} tool {n:04d}", credential="bench-credential").tool.id)
        for n in range(TOOLS)
    ]
    out[side] = {"key": issued.key.plaintext, "tools": tools}
print(json.dumps(out))
"""


class Receiver:
    """A webhook receiver that takes ``sleep`` seconds to answer each POST."""

    def __init__(self, sleep: float) -> None:
        self.sleep = sleep
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.sleep)
                with receiver.lock:
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> int:
        with self.lock:
            return self.count


@contextlib.contextmanager
def worker(stack: LiveStack, log_path: Path) -> Iterator[None]:
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "agentkey", "worker", "-l", "warning", *WORKER_OPTIONS],
            cwd=ROOT,
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per side")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per side first")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds the receiver takes to answer")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for every delivery to arrive")
    args = parser.parse_args(argv)
    if args.requests < 20:
        parser.error("--requests must be at least 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    receiver = Receiver(args.sleep)
    total = args.requests + args.warmup
    limits_raised = {
        "AGENTKEY_ALLOW_LOOPBACK_URLS": "true",  # the receiver is on 127.0.0.1
        "AGENTKEY_RATELIMIT_REQUEST": "1000000/h",
        "AGENTKEY_RATELIMIT_PREAUTH": "1000000/m",
        "AGENTKEY_RATELIMIT_READ": "1000000/m",
    }
    with (
        tempfile.TemporaryDirectory(prefix="agentkey-bench-") as tmp,
        live_stack(Path(tmp), redis_db=11, extra_env=limits_raised) as stack,
    ):
        print(f"stack up at {stack.base_url}; seeding {total} tools per side …", flush=True)
        seeded = json.loads(
            stack.shell(SEED.replace("RECEIVER", receiver.url).replace("TOOLS", str(total)))
            .strip()
            .splitlines()[-1]
        )
        sessions = {}
        for side in ("quiet", "notified"):
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {seeded[side]['key']}"
            sessions[side] = session
        timings: dict[str, list[float]] = {"quiet": [], "notified": []}
        with worker(stack, Path(tmp) / "worker.log"):
            for n in range(total):
                for side in ("quiet", "notified"):
                    tool_id = seeded[side]["tools"][n]
                    started = time.perf_counter()
                    response = sessions[side].post(
                        f"{stack.base_url}/api/tools/{tool_id}/request",
                        json={"reason": "Benchmarking the request path."},
                        timeout=30,
                    )
                    took = (time.perf_counter() - started) * 1000
                    if response.status_code != 201:
                        print(f"{side}: HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
                        return 2
                    if n >= args.warmup:
                        timings[side].append(took)
            received_during = receiver.received()
            expected = 2 * total
            arrived = received_during
            if not args.no_wait:
                deadline = time.monotonic() + max(120.0, expected * args.sleep / 8)
                while receiver.received() < expected and time.monotonic() < deadline:
                    time.sleep(0.5)
                arrived = receiver.received()
            if arrived != expected:
                print((Path(tmp) / "worker.log").read_text(errors="replace")[-4000:], file=sys.stderr)
    print()
    print(
        f"POST /api/tools/{{id}}/request, {args.requests} timed requests per side, receiver sleeps {args.sleep} s"
    )
    print("| side | median ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for side, values in timings.items():
        print(
            f"| {side} | {statistics.median(values):.1f} | {percentile(values, 0.9):.1f} | "
            f"{percentile(values, 0.99):.1f} | {max(values):.1f} |"
        )
    ratio = statistics.median(timings["notified"]) / statistics.median(timings["quiet"])
    print(f"\nratio of medians notified / quiet: {ratio:.2f}")
    print(f"webhooks received while requests ran: {received_during} of {expected}")
    if not args.no_wait:
        print(f"webhooks received in the end: {arrived} of {expected}")
    median = statistics.median(timings["notified"])
    if median >= TARGET_MS:
        print(f"FAIL: the notified median {median:.1f} ms reaches {TARGET_MS:.0f} ms", file=sys.stderr)
        return 1
    if not args.no_wait and arrived != expected:
        print(f"FAIL: {expected - arrived} deliveries did not arrive", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
