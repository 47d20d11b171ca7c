"""Issue #7: AgentKey's agent API under wrk, side by side with OpenBao, growth and memory.

    make bench                                   # the full run documented in docs/performance.md
    .venv/bin/python bench/run.py --duration 5 --rounds 1 --skip-rss   # a quick look

Starts the production stack (``make serve``: gunicorn, production settings, a fresh
PostgreSQL database, Redis; rate limiting on, with limits raised through the environment)
and an OpenBao server (raft storage, file audit device, KV v2, a policy-limited token),
seeds three organizations (5, 50 and 500 tools) through the services, then drives load with
wrk from a separate process at each concurrency, alternating AgentKey and OpenBao runs:

- ``GET /api/tools`` (5 tools), ``POST /api/tools/{id}/request`` (a re-request of a pending
  grant: the whole path up to the 409 answer) and ``GET /api/tools/{id}/credentials`` (the
  vend: decrypt and a committed audit row);
- OpenBao ``GET /v1/secret/data/<path>`` with ``X-Vault-Token`` (an audited KV v2 read);
- growth: ``GET /api/tools`` with 5, 50 and 500 tools;
- memory: VmRSS of each gunicorn worker at the start, every ~10,000 requests and the end
  of ``--rss-requests`` vends.

Prints markdown tables (min / median / max over the rounds) and writes every run to
``var/bench/results-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import wrk  # noqa: E402
from bench.harness.agentkey_stack import Seeded, agentkey_stack, rss_kib, seed, web_workers  # noqa: E402
from bench.harness.openbao import OpenBao, openbao_server  # noqa: E402

VEND_TARGET_P50_MS = 3.0


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def targets(base: str, org: Seeded) -> dict[str, wrk.Target]:
    auth = {"Authorization": f"Bearer {org.key}"}
    return {
        "GET /api/tools": wrk.Target("GET /api/tools", f"{base}/api/tools", auth),
        "POST request (409)": wrk.Target(
            "POST request (409)",
            f"{base}/api/tools/{org.pending_tool}/request",
            {**auth, "Content-Type": "application/json"},
            method="POST",
            body=json.dumps({"reason": "Benchmarking the request path."}),
            expected_status=409,
        ),
        "GET credentials (vend)": wrk.Target(
            "GET credentials (vend)", f"{base}/api/tools/{org.vend_tool}/credentials", auth
        ),
    }


def bao_target(bao: OpenBao) -> wrk.Target:
    return wrk.Target("OpenBao KV v2 read", bao.read_url, {"X-Vault-Token": bao.token})


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / **{statistics.median(values):.1f}** / {max(values):.1f}"


def spread_ms(values: list[float]) -> str:
    return f"{min(values):.2f} / **{statistics.median(values):.2f}** / {max(values):.2f}"


def table(results: list[wrk.Result], title: str) -> None:
    print(f"\n### {title}\n")
    print(
        "| endpoint | conc. | runs | req/s min / median / max | p50 ms min / median / max | p99 ms min / median / max |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    groups: dict[tuple[str, int], list[wrk.Result]] = {}
    for r in results:
        groups.setdefault((r.label, r.concurrency), []).append(r)
    for (label, conc), runs in groups.items():
        print(
            f"| {label} | {conc} | {len(runs)} | {spread([r.rps for r in runs])} | "
            f"{spread_ms([r.p50_ms for r in runs])} | {spread_ms([r.p99_ms for r in runs])} |"
        )


def ratios(results: list[wrk.Result], concurrencies: list[int]) -> list[dict[str, Any]]:
    out = []
    print("\n### Vend against OpenBao (ratio of medians)\n")
    print(
        "| conc. | vend req/s | OpenBao req/s | throughput ours / OpenBao | vend p50 ms | OpenBao p50 ms | p50 ours / OpenBao |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for c in concurrencies:
        ours = [r for r in results if r.label == "GET credentials (vend)" and r.concurrency == c]
        bao = [r for r in results if r.label == "OpenBao KV v2 read" and r.concurrency == c]
        if not ours or not bao:
            continue
        o_rps, b_rps = statistics.median(r.rps for r in ours), statistics.median(r.rps for r in bao)
        o_p50, b_p50 = statistics.median(r.p50_ms for r in ours), statistics.median(r.p50_ms for r in bao)
        row = {
            "concurrency": c,
            "ours_rps": o_rps,
            "bao_rps": b_rps,
            "rps_ratio": o_rps / b_rps,
            "ours_p50_ms": o_p50,
            "bao_p50_ms": b_p50,
            "p50_ratio": o_p50 / b_p50,
        }
        out.append(row)
        print(
            f"| {c} | {o_rps:.0f} | {b_rps:.0f} | **{o_rps / b_rps:.2f}** | {o_p50:.2f} | {b_p50:.2f} | {o_p50 / b_p50:.2f} |"
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated connection counts")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--growth", default="5,50,500", help="catalog sizes for GET /api/tools")
    parser.add_argument("--growth-concurrency", type=int, default=4)
    parser.add_argument("--rss-requests", type=int, default=100_000, help="vends while sampling RSS")
    parser.add_argument("--rss-budget", type=float, default=1800, help="seconds at most for the RSS part")
    parser.add_argument("--db", default="agentkey_bench_h5", help="database (dropped first and after)")
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument("--skip-openbao", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",")]
    args.growth = [int(n) for n in str(args.growth).split(",")]
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    return args


def measure_rss(
    wrk_bin: str, target: wrk.Target, pids: list[int], args: argparse.Namespace, tmp: Path
) -> list[dict[str, Any]]:
    """Vends in chunks of ~10,000 requests (at most 60 s each); VmRSS of each worker before and
    after every chunk. Stops at --rss-requests or after --rss-budget seconds, whichever first."""
    samples: list[dict[str, Any]] = [{"requests": 0, "rss_kib": {str(p): rss_kib(p) for p in pids}}]
    done = 0
    chunk_seconds = 5.0
    ends = time.monotonic() + args.rss_budget
    while done < args.rss_requests and time.monotonic() < ends:
        result = wrk.run(wrk_bin, target, concurrency=4, seconds=chunk_seconds, workdir=tmp)
        done += result.requests
        samples.append({"requests": done, "rss_kib": {str(p): rss_kib(p) for p in pids}})
        print(
            f"  {done:>7} requests: "
            + ", ".join(f"{v // 1024} MiB" for v in samples[-1]["rss_kib"].values()),
            flush=True,
        )
        chunk_seconds = max(1.0, min(60.0, 10_000 / max(result.rps, 1.0), ends - time.monotonic()))
    if done < args.rss_requests:
        print(f"  time budget spent: {done} of {args.rss_requests} requests (raise --rss-budget)", flush=True)
    return samples


def alternate(wrk_bin: str, every: list[wrk.Target], args: argparse.Namespace, tmp: Path) -> list[wrk.Result]:
    """Round after round, each concurrency, each target in turn (AgentKey's, then OpenBao)."""
    for target in every:  # warm up: connections, pools, imports
        wrk.run(wrk_bin, target, concurrency=4, seconds=2, workdir=tmp)
    results = []
    for round_no in range(1, args.rounds + 1):
        for c in args.concurrency:
            for target in every:
                r = wrk.run(wrk_bin, target, concurrency=c, seconds=args.duration, workdir=tmp)
                results.append(r)
                print(
                    f"round {round_no} c={c:<3} {r.label:<24} {r.rps:8.1f} req/s  "
                    f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms",
                    flush=True,
                )
    return results


def growth_runs(
    wrk_bin: str, base_url: str, orgs: dict[str, Seeded], args: argparse.Namespace, tmp: Path
) -> list[wrk.Result]:
    results = []
    for round_no in range(1, args.rounds + 1):
        for n in args.growth:
            auth = {"Authorization": f"Bearer {orgs[f'tools{n}'].key}"}
            target = wrk.Target(f"GET /api/tools ({n} tools)", f"{base_url}/api/tools", auth)
            r = wrk.run(
                wrk_bin, target, concurrency=args.growth_concurrency, seconds=args.duration, workdir=tmp
            )
            results.append(r)
            print(
                f"growth round {round_no} {n:>4} tools {r.rps:8.1f} req/s  p50 {r.p50_ms:7.2f} ms", flush=True
            )
    return results


def measure(wrk_bin: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Start both servers, seed, run every part; returns the runs by part."""
    sizes = {f"tools{n}": n for n in sorted({5, *args.growth})}
    out: dict[str, Any] = {"runs": [], "growth": [], "rss": [], "rss_boot": {}}
    with agentkey_stack(
        tmp / "ak", db_name=args.db, redis_db=args.redis_db, workers=args.workers, threads=args.threads
    ) as stack:
        print(f"AgentKey up at {stack.base_url}; seeding {sorted(sizes.values())} tools …", flush=True)
        started = time.monotonic()
        orgs = seed(stack, sizes)
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
        ours = targets(stack.base_url, orgs["tools5"])
        out["rss_boot"] = {str(p): rss_kib(p) for p in web_workers(stack)}  # before any agent request
        with contextlib.ExitStack() as servers:
            every = list(ours.values())
            if not args.skip_openbao:
                bao = servers.enter_context(openbao_server(tmp / "bao"))
                print(
                    f"OpenBao up at {bao.base_url} (raft, file audit device, KV v2, limited token)",
                    flush=True,
                )
                every.append(bao_target(bao))
            out["runs"] = alternate(wrk_bin, every, args, tmp / "wrk")
        if not args.skip_growth:
            out["growth"] = growth_runs(wrk_bin, stack.base_url, orgs, args, tmp / "wrk")
        if not args.skip_rss:
            pids = web_workers(stack)
            print(f"RSS of gunicorn workers {pids} across up to {args.rss_requests} vends …", flush=True)
            out["rss"] = measure_rss(wrk_bin, ours["GET credentials (vend)"], pids, args, tmp / "wrk")
        kept = ROOT / "var" / "bench" / "serve-last.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(stack.log()[-2_000_000:])
    return out


def report_growth(growth: list[wrk.Result], args: argparse.Namespace) -> None:
    table(growth, f"Growth: GET /api/tools at concurrency {args.growth_concurrency}")

    def p50(n: int) -> float:
        return statistics.median(r.p50_ms for r in growth if r.label == f"GET /api/tools ({n} tools)")

    small, large = min(args.growth), max(args.growth)
    print(f"\np50 with {large} tools / with {small} tools: **{p50(large) / p50(small):.2f}** (target ≤ 2)")


def report_rss(rss: list[dict[str, Any]]) -> None:
    print("\n### Web worker RSS (MiB)\n")
    pids = list(rss[0]["rss_kib"])
    print("| requests | " + " | ".join(f"worker {i + 1}" for i in range(len(pids))) + " |")
    print("|---:|" + "---:|" * len(pids))
    for s in rss:
        print(f"| {s['requests']} | " + " | ".join(f"{s['rss_kib'][p] / 1024:.1f}" for p in pids) + " |")
    for i, p in enumerate(pids):
        first, last = rss[0]["rss_kib"][p], rss[-1]["rss_kib"][p]
        warm = rss[1]["rss_kib"][p] if len(rss) > 1 else first
        print(
            f"worker {i + 1}: {first / 1024:.1f} → {last / 1024:.1f} MiB ({(last - first) / first * 100:+.1f} %; "
            f"{(last - warm) / warm * 100:+.1f} % after the first chunk)"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        wrk_bin = wrk.ensure_wrk()
    except wrk.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2
    info = machine()
    info.update(workers=args.workers, threads=args.threads, duration_s=args.duration, rounds=args.rounds)
    print(
        f"machine: {info['nproc']} CPU ({info['cpu']}), {info['ram_gib']} GiB; load {info['loadavg_start']}"
    )
    print(f"gunicorn {args.workers} workers x {args.threads} threads (gthread); wrk on the same machine")
    with tempfile.TemporaryDirectory(prefix="agentkey-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for part in ("ak", "bao"):
            (tmp / part).mkdir()
        (tmp / "wrk").mkdir(mode=0o700)
        measured = measure(wrk_bin, args, tmp)
    info["loadavg_end"] = os.getloadavg()
    print(f"\nload average at the end: {info['loadavg_end']}")
    table(measured["runs"], f"Agent API and OpenBao, {args.rounds} rounds of {args.duration:.0f} s per cell")
    compared = ratios(measured["runs"], args.concurrency)
    if measured["growth"]:
        report_growth(measured["growth"], args)
    if measured["rss"]:
        report_rss(measured["rss"])
        boot = ", ".join(f"{v / 1024:.1f} MiB" for v in measured["rss_boot"].values())
        print(f"RSS after boot, before the first agent request: {boot}")
    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    document = {
        "machine": info,
        "runs": [asdict(r) | {"rps": r.rps} for r in measured["runs"]],
        "vs_openbao": compared,
        "growth": [asdict(r) | {"rps": r.rps} for r in measured["growth"]],
        "rss": measured["rss"],
        "rss_boot": measured["rss_boot"],
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\nevery run: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
