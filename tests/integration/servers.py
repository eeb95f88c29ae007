"""Real processes for the integration tests: the gateway, PostgreSQL and Redis.

The gateway runs as `python -m engine serve` on a free loopback port, exactly as
`make run` starts it. PostgreSQL and Redis are the Debian packages' servers, started in
temporary folders; with CI=true a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

from tests.integration.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-test-secret-that-is-long-enough-0123456789"
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing(what: str) -> None:
    """Skip locally, fail in CI: a server the tests need must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    checked: int = 0
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=10)
        self.clients.append(client)
        return client

    def login(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> str:
        response = httpx.post(f"{self.url}/auth/login", json={"email": email, "password": password}, timeout=10)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def new_tracebacks(self) -> str:
        """Log text since the last check, if it holds a traceback."""
        text = self.log.read_text(errors="replace")
        fresh, self.checked = text[self.checked :], len(text)
        return fresh if "Traceback" in fresh else ""

    def stop(self) -> int:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_gateway(
    workdir: Path, env: Mapping[str, str | None] | None = None, *, wait: bool = True, address: str = "127.0.0.1"
) -> Gateway:
    """A gateway process on a free port; a variable given as None is left unset. Bound to
    another `address` (such as 0.0.0.0), it is still called on 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "MCPGATEWAY_", "DATABASE_", "REDIS_"))},
        "BIND": f"{address}:{port}",
        "DATA_DIR": str(workdir / "data"),
        "POLICY_PATHS": str(ROOT / "policies"),
        "POLICY_WATCH": "false",
        # The tests' upstreams listen on loopback, which the default policy refuses.
        "UPSTREAMS_ALLOW_INTERNAL_NETWORKS": "true",
        "JWT_SECRET_KEY": SECRET,
        "PLATFORM_ADMIN_EMAIL": ADMIN_EMAIL,
        "PLATFORM_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(env or {}),
    }
    settled: dict[str, str] = {k: v for k, v in environment.items() if v is not None}
    log = workdir / f"gateway-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"],
            cwd=workdir,
            env=settled,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", process, log, settled)
    if wait:
        wait_until_healthy(gateway)
    return gateway


def wait_until_healthy(gateway: Gateway, timeout: float = 20) -> None:
    def ready() -> bool:
        if gateway.process.poll() is not None:
            raise AssertionError(f"gateway exited early:\n{gateway.log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{gateway.url}/ready", timeout=1).status_code == 200
        return False

    eventually(ready, within=timeout, failure=lambda: f"gateway did not become ready:\n{gateway.log.read_text()}")


def mint(claims: Mapping[str, Any], *, header: Mapping[str, Any] | None = None, secret: str = SECRET) -> str:
    """A token signed with the test secret (or any header) for crafting attacks."""
    protected = {"alg": "HS256", "typ": "JWT", **(header or {})}
    key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode())
    token = jws.JWS(json_encode(dict(claims)).encode())
    token.add_signature(key, alg=protected["alg"], protected=json_encode(protected))
    return str(token.serialize(compact=True))


def unsigned(claims: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    def part(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(dict(value)).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def claims(sub: str = ADMIN_EMAIL, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        "jti": os.urandom(8).hex(),
        "aud": "mcpgateway-api",
        "iss": "mcpgateway",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None or k == "teams"}


# -- PostgreSQL and Redis ------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Postgres:
    url: str
    bindir: Path
    data: Path

    def stop(self) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(command), capture_output=True, check=False)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster; its URL names the `postgres` database.

    The cluster lives outside pytest's private temporary folders because the server
    runs as the `postgres` user (it refuses to run as root), who cannot enter them.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        missing("PostgreSQL (Debian package postgresql)")
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="policygate-pg-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    port = free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "pg.log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    server = Postgres(f"postgres://postgres@127.0.0.1:{port}/postgres", bindir, data)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    port = base_url.rsplit(":", 1)[1].split("/")[0]
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/createdb"))[-1]).parent
    subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", name], check=True)
    return base_url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("Redis (Debian package redis-server)")
    assert binary is not None
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    eventually(answers, within=10, failure=f"redis-server on port {port} did not answer PING")
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.terminate()
        process.wait(timeout=10)
