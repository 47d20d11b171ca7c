"""Drive load with wrk (Debian package ``wrk``) from a separate process.

Each run writes a small Lua script into a private temporary directory (it holds the
bearer token, so it is never put on a command line), runs wrk for a fixed duration
and reads one JSON line that the script's ``done`` hook prints: requests, latency
percentiles (µs) and how many responses had the expected status.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = """
wrk.method = {method}
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) expected_n = 0; other_n = 0; other_status = 0 end
function response(status, headers, body)
  if status == {expected} then expected_n = expected_n + 1
  else other_n = other_n + 1; other_status = status end
end
function done(summary, latency, requests)
  local exp, oth, ost = 0, 0, 0
  for _, t in ipairs(threads) do
    exp = exp + t:get("expected_n"); oth = oth + t:get("other_n")
    if t:get("other_status") ~= 0 then ost = t:get("other_status") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"expected":%d,"other":%d,"other_status":%d,"socket_errors":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, exp, oth, ost, e.connect + e.read + e.write + e.timeout))
end
"""

WRK_MISSING = (
    "wrk is not installed and could not be installed automatically. "
    "Install it with `apt-get install -y wrk` (Debian/Ubuntu) and run the benchmark again."
)


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """One endpoint to load: URL, method, headers, body and the status every answer must have."""

    label: str
    url: str
    headers: dict[str, str]
    method: str = "GET"
    body: str | None = None
    expected_status: int = 200


@dataclass(frozen=True)
class Result:
    label: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    unexpected: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The wrk executable; installs the Debian package when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing; installing the Debian package (apt-get install -y wrk) …", flush=True)
        installed = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)
        if installed.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkError(WRK_MISSING)


def _lua_string(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # a JSON string is a valid Lua string here


def script_for(target: Target) -> str:
    headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items())
    return LUA.format(
        method=json.dumps(target.method),
        body=_lua_string(target.body),
        headers=headers,
        expected=target.expected_status,
    )


def run(wrk: str, target: Target, *, concurrency: int, seconds: float, workdir: Path) -> Result:
    """One wrk run of ``seconds`` at ``concurrency`` open connections (keep-alive)."""
    script = workdir / "wrk.lua"
    script.write_text(script_for(target))
    script.chmod(0o600)
    threads = min(concurrency, 2)  # the machine has 2 cores; wrk needs threads <= connections
    completed = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    script.unlink()
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise WrkError(
            f"wrk failed on {target.label}: {completed.stderr[-1000:] or completed.stdout[-1000:]}"
        )
    data = json.loads(line.removeprefix("BENCH_JSON "))
    unexpected = int(data["other"]) + int(data["socket_errors"])
    if int(data["other"]):
        print(
            f"  warning: {data['other']} answers of {target.label} had HTTP {data['other_status']} "
            f"(expected {target.expected_status})",
            flush=True,
        )
    return Result(
        label=target.label,
        concurrency=concurrency,
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_ms=int(data["p50_us"]) / 1000,
        p90_ms=int(data["p90_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        max_ms=int(data["max_us"]) / 1000,
        unexpected=unexpected,
    )
