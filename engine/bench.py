"""Measure what the policy engine costs: decisions, content scans, builds.

Figures come from this machine at the time of the run and are printed, never asserted.
The scan baseline is the reference gateway's approach: its twelve default patterns, run
one after another with Python `re`, each finding every match, as our scan does.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from engine.decide import AuthMethod, RequestContext, Token, User, decide
from engine.decide.content import scan
from engine.policy import Snapshot, Source, compile_policy

__all__ = ["REFERENCE_PATTERNS", "benign_text", "run_bench"]

REFERENCE_PATTERNS: Final = (
    r"<script[^>]*>.*?</script>",
    r"on\w+\s*=",
    r"javascript:",
    r"\{\{.*?\}\}|\{%.*?%\}",
    r"\{\{.*?\}\}",
    r"\$\{.*?\}",
    r"[;&|`$()]",
    r"&&|\|\||;",
    r"`.*?`",
    r"(union|select|insert|update|delete|drop|create|alter)\s",
    r"--|\#|/\*|\*/",
    r"'\s*(or|and)\s*'",
)
"""The reference's default attack patterns, for the speed baseline only."""

_PROSE: Final = (
    "the gateway forwards each request to the server after the policy allows it and records "
    "a short line for every decision so operators can follow what happened during the day "
    "teams share tools resources and prompts while admins review the catalog and rotate keys "
    "a report arrives every morning with figures about latency throughput errors and usage"
)


_PUNCTUATED: Final = (
    '(see the report) ready: 42 tools, 3 teams; "review" the catalog - keys rotate at 09:00 '
    "e.g. latency/throughput 5% or less? yes! [done] #ops"
)


def benign_text(size: int, seed: int = 7, *, punctuated: bool = False) -> str:
    """English-like prose of exactly `size` bytes, the same for the same seed.

    Plain prose has letters, spaces and commas only, so the scan's literal gate answers it
    alone; `punctuated` mixes in the quotes, brackets, digits and signs of everyday text,
    which reach the full Hyperscan pass.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    vocabulary = _PROSE.split() + (_PUNCTUATED.split() if punctuated else [])
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(vocabulary)
        if rng.random() < 0.08:
            word = word.capitalize() + ","
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def run_bench(layers: Sequence[Sequence[Source]], validators: Mapping[str, Any]) -> dict[str, float]:
    """Every figure of `policygate bench`, keyed as documented."""
    builds = []
    kept = []
    rss_before = 0.0
    for n in range(4):
        started = time.perf_counter()
        snapshot = compile_policy(layers, validators=validators).snapshot
        builds.append(time.perf_counter() - started)
        if n == 0:
            rss_before = _rss_mb()  # after one-time costs (imports, regex caches)
        else:
            kept.append(snapshot)
    # Several snapshots held at once; the growth per snapshot is what holding one costs.
    snapshot_mb = (_rss_mb() - rss_before) / len(kept)
    decisions = _decide_latency(snapshot)
    scanner = snapshot.content.scanners["resource"]
    one_mb, one_kb, hundred_kb = benign_text(1 << 20), benign_text(1024), benign_text(100 * 1024)
    mb_seconds = _best(lambda: scan(scanner, one_mb), 20)
    punctuated = benign_text(1 << 20, punctuated=True)
    punctuated_seconds = _best(lambda: scan(scanner, punctuated), 10)
    kb_samples = _samples(lambda: scan(scanner, one_kb), 20000)
    ours_100kb = _best(lambda: scan(scanner, hundred_kb), 50)
    compiled = [re.compile(p, re.IGNORECASE) for p in REFERENCE_PATTERNS]
    baseline_100kb = _best(lambda: [list(p.finditer(hundred_kb)) for p in compiled], 5)
    return {
        **decisions,
        "scan_mb_s_1mb_benign": round(1.0 / mb_seconds, 1),
        "scan_mb_s_1mb_punctuated": round(1.0 / punctuated_seconds, 1),
        "scan_us_1kb": round(statistics.median(kb_samples) * 1e6, 2),
        "scan_speedup_vs_re_100kb": round(baseline_100kb / ours_100kb, 1),
        "compile_ms": round(statistics.median(builds) * 1000, 1),
        "snapshot_rss_mb": round(snapshot_mb, 1),
    }


def _rss_mb() -> float:
    """Resident memory of this process in MiB (Linux), read from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _decide_latency(snapshot: Snapshot) -> dict[str, float]:
    """p50 and p99 of an authorization decision: route, token, scopes, visibility.

    Twice: a caller repeating a request, as MCP clients do call after call with one
    token (answered from the snapshot's memo), and a request seen for the first time
    (a token object never seen before, so everything is worked out and then kept).
    """
    now = 1_800_000_000.0
    claims = {
        "sub": "dev@example.com",
        "exp": now + 3600,
        "iat": now - 60,
        "jti": "bench-1",
        "aud": "mcpgateway-api",
        "iss": "mcpgateway",
        "teams": ["team-a", "team-b"],
        "scopes": {"server_id": "srv-1", "permissions": ["tools.read", "tools.execute"]},
    }
    user = User("dev@example.com", teams=frozenset({"team-a", "team-b"}), roles=frozenset({"developer"}))

    def request(token: Token) -> RequestContext:
        return RequestContext(
            "POST", "/servers/srv-1/mcp", now, auth=AuthMethod.BEARER, token=token, user=user, mcp_method="tools/list"
        )

    ctx = request(Token({"alg": "HS256", "typ": "JWT"}, claims))
    if not decide(snapshot, ctx).allow:
        raise RuntimeError("the benchmark request is not allowed by this policy")
    repeated = _samples(lambda: decide(snapshot, ctx), 200_000)
    firsts = iter([request(Token({"alg": "HS256", "typ": "JWT"}, claims)) for _ in range(20_000)])
    first = _samples(lambda: decide(snapshot, next(firsts)), 20_000)
    figures = {}
    for name, samples in (("decide", repeated), ("decide_first", first)):
        samples.sort()
        figures[f"{name}_p50_us"] = round(samples[len(samples) // 2] * 1e6, 2)
        figures[f"{name}_p99_us"] = round(samples[int(len(samples) * 0.99)] * 1e6, 2)
    return figures


def _samples(call: Callable[[], object], count: int) -> list[float]:
    clock = time.perf_counter
    out = []
    for _ in range(count):
        started = clock()
        call()
        out.append(clock() - started)
    return out


def _best(call: Callable[[], object], count: int) -> float:
    return min(_samples(call, count))
