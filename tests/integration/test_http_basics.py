"""The gateway over real HTTP: health, errors, headers, login and who-am-I."""

from __future__ import annotations

import json

import httpx

from tests.integration.servers import ADMIN_EMAIL, ADMIN_PASSWORD, Gateway


def test_health_and_ready_are_public(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "healthy"}
    ready = httpx.get(f"{gateway.url}/ready").json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"store": True}
    assert len(ready["policy_version"]) == 64


def test_an_unauthenticated_request_gets_401_with_a_bearer_challenge(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/tokens")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "auth_required"
    assert error["request_id"] == response.headers["x-request-id"]


def test_unknown_paths_are_denied_by_default_with_json(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/internal/debug")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "default_deny"


def test_every_response_carries_the_policy_security_headers(gateway: Gateway) -> None:
    headers = httpx.get(f"{gateway.url}/health").headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_well_known_files_come_from_the_policy(gateway: Gateway) -> None:
    robots = httpx.get(f"{gateway.url}/robots.txt")
    assert robots.status_code == 200
    assert "Disallow: /" in robots.text
    security = httpx.get(f"{gateway.url}/.well-known/security.txt")
    assert "Contact: mailto:security@example.com" in security.text
    assert httpx.get(f"{gateway.url}/.well-known/nothing-here").status_code == 404


def test_login_wrong_password_and_unknown_user_look_the_same(gateway: Gateway) -> None:
    wrong = httpx.post(f"{gateway.url}/auth/login", json={"email": ADMIN_EMAIL, "password": "nope"})
    unknown = httpx.post(f"{gateway.url}/auth/login", json={"email": "ghost@example.com", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"


def test_bad_bodies_are_400_or_422_and_never_500(gateway: Gateway) -> None:
    url = f"{gateway.url}/auth/login"
    not_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "invalid_json")
    wrong_shape = httpx.post(url, json={"email": 42, "extra": True})
    assert wrong_shape.status_code == 422
    assert set(wrong_shape.json()["error"]["details"]) == {"email", "extra", "password"}
    huge = httpx.post(url, content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_a_body_must_say_it_is_json(gateway: Gateway) -> None:
    """A cross-site form can spell a JSON object in `text/plain`; its type gives it away."""
    login = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        refused = httpx.post(f"{gateway.url}/auth/login", content=login, headers={"content-type": content_type})
        assert (refused.status_code, refused.json()["error"]["code"]) == (415, "unsupported_media_type")
    admin = gateway.client(gateway.login())
    form = admin.post("/tools", content=json.dumps({"name": "t-form"}), headers={"content-type": "text/plain"})
    assert form.status_code == 415
    assert "t-form" not in {t["name"] for t in admin.get("/tools").json()["items"]}
    typed = admin.post("/tools", content=json.dumps({"name": "t-typed"}),
                       headers={"content-type": "application/json; charset=utf-8"})  # fmt: skip
    assert typed.status_code == 201


def test_session_token_shows_teams_resolved_server_side(gateway: Gateway) -> None:
    me = gateway.client(gateway.login()).get("/auth/me").json()
    assert me["email"] == ADMIN_EMAIL
    assert me["is_admin"] is True
    assert me["visibility"] == {"access": "unrestricted", "rule": "visibility/session-tokens", "teams": []}
    assert "admin.system_config" in me["permissions"]


def test_docs_and_openapi_need_authentication(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/openapi.json").status_code == 401
    client = gateway.client(gateway.login())
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "post" in spec["paths"]["/tokens"]
    assert "delete" in spec["paths"]["/tokens/{jti}"]
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/tokens" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_method_the_route_does_not_serve_is_refused(gateway: Gateway) -> None:
    response = httpx.put(f"{gateway.url}/health")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "default_deny"
