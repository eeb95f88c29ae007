"""Running wrk and reading its figures, for the HTTP and MCP benchmarks."""

from __future__ import annotations

import re
import subprocess

__all__ = ["run_wrk"]


def run_wrk(url: str, connections: int, seconds: int, *extra: str) -> dict[str, float]:
    """Requests/s, p50/p99 in ms and the count of non-2xx answers of one bounded run."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = {"requests_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        figures[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non_2xx"] = float(failed[1]) if failed else 0.0
    return figures
