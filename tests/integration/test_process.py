"""Starting and stopping the gateway process: refusals, production checks, shutdown."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.servers import ADMIN_PASSWORD, ROOT, SECRET, Gateway, start_gateway


def _refused(tmp_path: Path, **env: str) -> tuple[int, str]:
    server = start_gateway(tmp_path, env, wait=False)
    try:
        code = server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.stop()
        raise
    return code, server.log.read_text()


def test_production_refuses_default_and_weak_settings(tmp_path: Path) -> None:
    code, log = _refused(tmp_path, ENVIRONMENT="production", PLATFORM_ADMIN_PASSWORD="changeme", JWT_SECRET_KEY="short")
    assert code == 1
    assert "refusing to start in production" in log
    assert "PLATFORM_ADMIN_PASSWORD" in log
    assert "JWT_SECRET_KEY` is shorter than 32" in log
    assert "the token issuer is the default" in log
    assert "short" not in log.replace("shorter", ""), "the secret itself is never printed"
    assert "Traceback" not in log


def test_production_starts_with_proper_settings(start: Callable[..., Gateway]) -> None:
    server = start(ENVIRONMENT="production", JWT_ISSUER="acme-gateway", JWT_AUDIENCE="acme-api")
    assert server.client(server.login()).get("/auth/me").status_code == 200
    assert SECRET not in server.log.read_text()
    assert ADMIN_PASSWORD not in server.log.read_text()


def test_a_malformed_setting_is_a_usage_error(tmp_path: Path) -> None:
    code, log = _refused(tmp_path, WORKERS="many", JWT_SECRET_KEY="do-not-print-this-secret-value-12345")
    assert code == 2
    assert "`WORKERS`" in log
    assert "do-not-print" not in log


def test_a_bad_policy_stops_the_start_with_its_location(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    sizes = policies / "sizes.yaml"
    sizes.write_text(sizes.read_text().replace("maxBytes: 10240\n", "maxBytes: -5\n"))
    code, log = _refused(tmp_path, POLICY_PATHS=str(policies))
    line = sizes.read_text().splitlines().index("      maxBytes: -5") + 1
    assert code == 1
    assert f"{sizes}:{line}:17: schema.minimum" in log


def test_sigterm_finishes_requests_in_flight_and_exits_cleanly(start: Callable[..., Gateway]) -> None:
    server = start()
    results: list[object] = []

    def slow_login(client: httpx.Client) -> None:  # scrypt makes a login take a noticeable moment
        try:
            response = client.post("/auth/login", json={"email": "x@example.com", "password": "y"})
            results.append(response.status_code)
        except httpx.ConnectError:
            results.append("not accepted")  # arrived after the listener closed: fine
        except httpx.HTTPError as err:
            results.append(type(err).__name__)  # accepted, then dropped: not fine

    threads = [threading.Thread(target=slow_login, args=(server.client(),)) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert server.process.wait(timeout=20) == 0
    assert 401 in results, results
    assert set(results) <= {401, "not accepted"}, results
