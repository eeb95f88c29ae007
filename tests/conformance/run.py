"""`make conformance`: the official MCP conformance suite against the gateway.

The suite (`@modelcontextprotocol/conformance`, Node >= 22 from the npm package
`node@22`) is installed into `.cache/conformance`. The gateway federates a fixture
upstream that provides the tools, resources and prompts the scenarios call (with no name
prefix, since the scenarios use fixed names). The suite cannot send an Authorization
header, so a small proxy in front of the gateway adds an admin bearer token and passes
everything else through untouched (Host and Origin included, so the DNS-rebinding
scenario tests the gateway, not the proxy). Prints the suite's summary; exits with its
status.

    python -m tests.conformance.run [--scenario NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
from aiohttp import ClientSession, web

from tests.integration.servers import ADMIN_EMAIL, ADMIN_PASSWORD, ROOT, claims, free_port, mint, start_gateway

CACHE = ROOT / ".cache" / "conformance"
SUITE = "@modelcontextprotocol/conformance@0.1.16"


def install() -> tuple[Path, Path]:
    node = CACHE / "node_modules" / ".bin" / "node"
    script = CACHE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not (node.exists() and script.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", SUITE, "node@22"], check=True
        )
    return node, script


@contextlib.contextmanager
def fixture_upstream() -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "tests.conformance.fixture_upstream", str(port)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    for _ in range(200):
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=0.2)
            break
        threading.Event().wait(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def auth_proxy(target: str, token: str) -> Iterator[str]:
    """A pass-through proxy that adds `Authorization`, streaming bodies both ways."""
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def forward(request: web.Request) -> web.StreamResponse:
        session: ClientSession = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        headers["Authorization"] = f"Bearer {token}"
        body = await request.read()
        async with session.request(request.method, target + request.path_qs, headers=headers, data=body) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection"):
                    response.headers[name] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def serve() -> None:
        app = web.Application()
        app["session"] = ClientSession(auto_decompress=False)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await app["session"].close()
        await runner.cleanup()

    stop = threading.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario")
    args = parser.parse_args()
    node, script = install()
    with tempfile.TemporaryDirectory() as tmp, fixture_upstream() as upstream_url:
        gateway = start_gateway(Path(tmp), {"LOG_LEVEL": "WARNING", "PLATFORM_ADMIN_PASSWORD": ADMIN_PASSWORD})
        try:
            token = mint(claims(ADMIN_EMAIL, teams=None, exp=None) | {"exp": int(__import__("time").time()) + 3600})
            registered = httpx.post(
                f"{gateway.url}/gateways",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "fixture", "url": upstream_url, "visibility": "public", "prefix": ""},
                timeout=30,
            )
            registered.raise_for_status()
            print(f"fixture upstream discovered: {registered.json()['discovered']}")
            with auth_proxy(gateway.url, token) as proxy:
                command = [str(node), str(script), "server", "--url", f"{proxy}/mcp"]
                command += ["--scenario", args.scenario] if args.scenario else ["--suite", "all"]
                return subprocess.run(command, cwd=CACHE, env={**os.environ}, check=False).returncode
        finally:
            gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
