"""`make bench-http`: authenticated list requests against a real gateway, under wrk.

For HS256 and RS256 tokens: start-up to ready, requests/s and p50/p99 latency of
`GET /tokens` at 16 and 50 connections for a bounded time, and the resident memory of
each worker after the load. Prints figures; asserts nothing (speed is not a test).

    python -m tests.bench.http [--seconds 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from jwcrypto import jwk

from tests.bench.wrk import run_wrk
from tests.integration.servers import ADMIN_PASSWORD, start_gateway, wait_until_healthy


def _rss_mib(pid: int) -> list[float]:
    """Resident memory of the serving processes (the parent, or its workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    pids = [int(c) for c in children] or [pid]
    sizes = []
    for each in pids:
        status = Path(f"/proc/{each}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024)  # type: ignore[index]
    return sizes


def run(alg: str, workers: int, seconds: int, folder: Path) -> dict[str, Any]:
    env = {"WORKERS": str(workers), "LOG_LEVEL": "WARNING", "JWT_ALGORITHM": alg}
    if alg.startswith("RS"):
        key = jwk.JWK.generate(kty="RSA", size=2048)
        (folder / "private.pem").write_bytes(key.export_to_pem(private_key=True, password=None))
        (folder / "public.pem").write_bytes(key.export_to_pem())
        env |= {"JWT_PRIVATE_KEY_PATH": str(folder / "private.pem"), "JWT_PUBLIC_KEY_PATH": str(folder / "public.pem")}
        env["JWT_SECRET_KEY"] = ""
    started = time.perf_counter()
    server = start_gateway(folder, env, wait=False)
    try:
        wait_until_healthy(server)
        ready_s = time.perf_counter() - started
        # /ready answers as soon as one worker is up; wrk's keep-alive connections would all
        # stay on that worker if the load started before the others listen.
        time.sleep(2.0 if workers > 1 else 0.0)
        token = server.login()
        for i in range(5):
            httpx.post(
                f"{server.url}/tokens", json={"name": f"bench-{i}"}, headers={"Authorization": f"Bearer {token}"}
            )
        figures: dict[str, Any] = {"alg": alg, "workers": workers, "start_to_ready_s": round(ready_s, 3)}
        for connections in (16, 50):
            figures[f"c{connections}"] = run_wrk(
                f"{server.url}/tokens", connections, seconds, "-H", f"Authorization: Bearer {token}"
            )
        figures["rss_mib_per_worker"] = [round(x, 1) for x in _rss_mib(server.process.pid)]
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    os.environ.setdefault("PLATFORM_ADMIN_PASSWORD", ADMIN_PASSWORD)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for alg in ("HS256", "RS256"):
            folder = Path(tmp) / alg
            folder.mkdir()
            results.append(run(alg, args.workers, args.seconds, folder))
        single = Path(tmp) / "single"
        single.mkdir()
        started = time.perf_counter()
        server = start_gateway(single, {"WORKERS": "1", "LOG_LEVEL": "WARNING"}, wait=False)
        wait_until_healthy(server)
        one_worker_ready = time.perf_counter() - started
        server.stop()
    for r in results:
        for c in ("c16", "c50"):
            f = r[c]
            print(
                f"{r['alg']} workers={r['workers']} {c}: {f['requests_s']:.0f} req/s, "
                f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, non-2xx {f['non_2xx']:.0f}"
            )
        print(f"{r['alg']}: start to ready {r['start_to_ready_s']} s, RSS per worker {r['rss_mib_per_worker']} MiB")
    print(f"one worker: start to ready {one_worker_ready:.3f} s")
    print(json.dumps({"runs": results, "one_worker_start_to_ready_s": round(one_worker_ready, 3)}))


if __name__ == "__main__":
    main()
