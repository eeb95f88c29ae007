"""`make bench-mcp`: MCP through the gateway under load, and what the gateway adds to a call.

1. `tools/list` requests/s and p50/p99 with wrk against `/mcp` (bounded time, 16 and
   50 connections), each request carrying its session id and bearer token.
2. A forwarded `tools/call` with 10 KB of arguments and a 10 KB result, called one at a
   time through the gateway and directly on the upstream, in alternating rounds. What
   the gateway adds, content checks included, is the median over the rounds of each
   round's difference of medians: this machine's speed drifts by a third within a
   minute, and two runs taken one after the other would measure the drift.
   It is measured twice: as the processes fall (three of them on this machine's two
   cores, so the scheduler's placement and wake-ups weigh on the figure), and with the
   gateway on a core of its own and the load generator and upstream on the other, as a
   gateway runs in production, which isolates what the gateway itself adds.
3. The content-scan cost of one such call (arguments and result), measured in-process.

    python -m tests.bench.mcp [--seconds 20] [--workers 1] [--rounds 12] [--calls 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.wrk import run_wrk
from tests.integration.mcp_client import UPSTREAM_TOKEN, upstream_server
from tests.integration.servers import ADMIN_EMAIL, ADMIN_PASSWORD, claims, mint, start_gateway

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "%s"
wrk.headers["Authorization"] = "Bearer %s"
"""


def _session(url: str, headers: dict[str, str]) -> str:
    response = httpx.post(url, headers={**headers, "Accept": "application/json, text/event-stream"}, json=INIT)
    response.raise_for_status()
    session = response.headers["mcp-session-id"]
    httpx.post(
        url,
        headers={**headers, "Accept": "application/json, text/event-stream", "Mcp-Session-Id": session},
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
    )
    return session


class _Caller:
    """One MCP session and connection calling a tool with 10 KB of arguments."""

    def __init__(self, url: str, headers: dict[str, str], name: str) -> None:
        session = _session(url, headers)
        self.url = url
        self.client = httpx.Client(
            headers={**headers, "Accept": "application/json, text/event-stream", "Mcp-Session-Id": session}
        )
        text = ("lorem ipsum dolor sit amet " * 400)[:10240]
        self.message = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": name, "arguments": {"text": text}}}  # fmt: skip

    def latencies(self, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            response = self.client.post(self.url, json=self.message)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            assert "error" not in response.text[:200], response.text[:300]
        return samples


def _added(through: _Caller, direct: _Caller, rounds: int, calls: int) -> dict[str, float]:
    """Alternating rounds (through, direct, direct, through, ...) and their differences."""
    through.latencies(calls)
    direct.latencies(calls)  # warm both paths before anything counts
    pooled: dict[str, list[float]] = {"through": [], "direct": []}
    differences = []
    for i in range(rounds):
        order = ((through, "through"), (direct, "direct"))
        medians = {}
        for caller, name in order if i % 2 == 0 else order[::-1]:
            samples = caller.latencies(calls)
            pooled[name] += samples
            medians[name] = statistics.median(samples)
        differences.append(medians["through"] - medians["direct"])
    return {
        "gateway_p50_ms": round(statistics.median(pooled["through"]), 3),
        "gateway_p99_ms": round(statistics.quantiles(pooled["through"], n=100)[98], 3),
        "direct_p50_ms": round(statistics.median(pooled["direct"]), 3),
        "added_p50_ms": round(statistics.median(differences), 3),
        "added_p50_ms_min_round": round(min(differences), 3),
        "added_p50_ms_max_round": round(max(differences), 3),
    }


def _family(root: int) -> set[int]:
    """`root` and every process descended from it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = (Path("/proc") / entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    family = {root}
    grown = True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grown = bool(more)
    return family


def _pinned(gateway_pid: int) -> bool:
    """Give the gateway the first core and everything else of ours the rest; False when
    the machine has a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return False
    gateway = _family(gateway_pid)
    for pid in _family(os.getpid()) - gateway:
        os.sched_setaffinity(pid, set(cores[1:]))
    for pid in gateway:
        os.sched_setaffinity(pid, {cores[0]})
    return True


def _scan_cost_us() -> float:
    from engine.decide import Content
    from engine.decide.content import inspect_content, inspect_parts
    from engine.json_bytes import dumps
    from engine.json_texts import texts
    from engine.policy import compile_policy
    from engine.schemas import validators
    from engine.sources import read_layer
    from tests.integration.servers import ROOT

    content = compile_policy([read_layer([ROOT / "policies"])], validators=validators()).snapshot.content
    text = ("lorem ipsum dolor sit amet " * 400)[:10240]
    arguments = {"text": text}
    best = float("inf")
    for _ in range(200):
        started = time.perf_counter()
        inspect_parts(content, "tool_args", texts(arguments), len(dumps(arguments)))
        inspect_content(content, Content("tool_result", text))
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=60, help="tool calls per path and round")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, upstream_server() as upstream_url:
        folder = Path(tmp)
        env = {"WORKERS": str(args.workers), "LOG_LEVEL": "WARNING", "PLATFORM_ADMIN_PASSWORD": ADMIN_PASSWORD}
        server = start_gateway(folder / "gw", env)
        try:
            token = mint(claims(ADMIN_EMAIL, teams=None))
            registered = httpx.post(
                f"{server.url}/gateways",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "up", "url": upstream_url, "visibility": "public", "prefix": "",
                      "credentials": {"bearer_token": UPSTREAM_TOKEN}},
            )  # fmt: skip
            registered.raise_for_status()
            for i in range(20):
                httpx.post(f"{server.url}/tools", headers={"Authorization": f"Bearer {token}"},
                           json={"name": f"local-{i}", "visibility": "public"})  # fmt: skip
            gateway_headers = {"Authorization": f"Bearer {token}"}
            session = _session(f"{server.url}/mcp", gateway_headers)
            script = folder / "tools_list.lua"
            script.write_text(_WRK_SCRIPT % (session, token))
            for connections in (16, 50):
                results[f"tools_list_c{connections}"] = run_wrk(
                    f"{server.url}/mcp", connections, args.seconds, "-s", str(script)
                )
            through = _Caller(f"{server.url}/mcp", gateway_headers, "echo")
            direct = _Caller(upstream_url, {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}, "echo")
            with through.client, direct.client:
                results["tools_call_10kb"] = _added(through, direct, args.rounds, args.calls)
                if _pinned(server.process.pid):
                    results["tools_call_10kb_own_core"] = _added(through, direct, args.rounds, args.calls)
        finally:
            server.stop()
    results["content_scan_us_per_call"] = round(_scan_cost_us(), 1)
    for key in ("tools_list_c16", "tools_list_c50"):
        f = results[key]
        print(f"{key}: {f['requests_s']:.0f} req/s, p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, "
              f"non-2xx {f['non_2xx']:.0f}")  # fmt: skip
    for key, label in (("tools_call_10kb", ""), ("tools_call_10kb_own_core", ", gateway on its own core")):
        if key not in results:
            continue
        call = results[key]
        print(
            f"tools/call 10 KB{label}: gateway p50 {call['gateway_p50_ms']} ms (p99 {call['gateway_p99_ms']} ms), "
            f"direct p50 {call['direct_p50_ms']} ms, added p50 {call['added_p50_ms']} ms "
            f"(rounds {call['added_p50_ms_min_round']} to {call['added_p50_ms_max_round']} ms)"
        )
    print(f"content scan per call (10 KB arguments + 10 KB result): {results['content_scan_us_per_call']} us")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
