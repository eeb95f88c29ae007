"""Admin changes sent at once, on SQLite and on a real PostgreSQL (with and without Redis).

One worker interleaves two requests at every query, so a change read before another was
written and then written whole undoes it; PostgreSQL runs the two transactions side by
side, where only row locks order them. SQLite runs one transaction at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.servers import ADMIN_EMAIL, Gateway, create_database, postgres_server

_PASSWORD = "a fine password"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def server(request: pytest.FixtureRequest, start: Callable[..., Gateway]) -> Gateway:
    env = {}
    if request.param != "sqlite":
        env["DATABASE_URL"] = create_database(request.getfixturevalue("postgres"), f"pg_{uuid.uuid4().hex[:8]}")
    if request.param.endswith("+redis"):
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    return start(MCPGATEWAY_ADMIN_API_ENABLED="true", **env)


def _patch(server: Gateway, token: str, email: str, change: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.patch(f"{server.url}/admin/users/{email}", headers=headers, json=change).status_code


def test_two_changes_to_different_fields_at_once_both_hold(server: Gateway) -> None:
    """The lost update: a change to `roles` read before a deactivation was written would
    write `is_active` back as it read it, and so enable the user again."""
    token = server.login()
    admin = server.client(token)
    admin.post("/admin/users", json={"email": "target@example.com", "password": _PASSWORD})
    for attempt in range(8):
        roles = ["developer"] if attempt % 2 else ["viewer"]
        with ThreadPoolExecutor(2) as pool:
            disable = pool.submit(_patch, server, token, "target@example.com", {"is_active": False})
            grant = pool.submit(_patch, server, token, "target@example.com", {"roles": roles})
            codes = [disable.result(), grant.result()]
        assert codes == [200, 200], codes
        user = next(u for u in admin.get("/admin/users").json()["items"] if u["email"] == "target@example.com")
        assert (user["is_active"], user["roles"]) == (False, roles), attempt
        assert admin.patch("/admin/users/target@example.com", json={"is_active": True}).status_code == 200


def test_two_admins_demoting_each_other_at_once_leave_one(server: Gateway) -> None:
    """Each change checks that an active admin remains; run at once, neither may count the
    other as that admin."""
    server.client(server.login()).post(
        "/admin/users", json={"email": "rival@example.com", "password": _PASSWORD, "is_admin": True}
    )
    tokens = {ADMIN_EMAIL: server.login(), "rival@example.com": server.login("rival@example.com", _PASSWORD)}
    for attempt in range(8):
        change = {"is_admin": False} if attempt % 2 else {"is_active": False}
        with ThreadPoolExecutor(2) as pool:
            left = pool.submit(_patch, server, tokens[ADMIN_EMAIL], "rival@example.com", change)
            right = pool.submit(_patch, server, tokens["rival@example.com"], ADMIN_EMAIL, change)
            codes = {ADMIN_EMAIL: left.result(), "rival@example.com": right.result()}
        # The second finds its caller no longer an admin (403), or the other the last
        # active admin (409), depending on where the first one's change caught it.
        assert sorted(codes.values()) in ([200, 403], [200, 409]), codes
        survivor = next(email for email, code in codes.items() if code == 200)
        admin = server.client(tokens[survivor])
        users = admin.get("/admin/users").json()["items"]
        assert [u["email"] for u in users if u["is_admin"] and u["is_active"]] == [survivor], (codes, users)
        other = next(email for email in codes if email != survivor)
        assert admin.patch(f"/admin/users/{other}", json={"is_admin": True, "is_active": True}).status_code == 200
