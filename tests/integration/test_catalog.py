"""The catalog over REST: visibility as 404s, permissions, the content pipeline, bulk import."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.servers import Gateway, claims, mint

PASSWORD = "catalog test password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_server(
        tmp_path_factory.mktemp("catalog"),
        MCPGATEWAY_ADMIN_API_ENABLED="true",
        MCPGATEWAY_BULK_IMPORT_ENABLED="true",
        ALLOW_TEAM_CREATION="true",
    )
    admin = gw.client(gw.login())
    for email, role in (
        ("dev@example.com", "developer"),
        ("other@example.com", "developer"),
        ("view@example.com", "viewer"),
    ):
        assert (
            admin.post("/admin/users", json={"email": email, "password": PASSWORD, "roles": [role]}).status_code == 201
        )
    yield gw
    stop_server(gw)


def _as(server: Gateway, email: str, teams: list[str] | None) -> object:
    return server.client(mint(claims(email, teams=teams)))


def test_visibility_is_applied_to_lists_and_reads(server: Gateway) -> None:
    session = server.client(server.login())
    blue_id = session.post("/teams", json={"name": "blue"}).json()["id"]
    dev = server.client(mint(claims("dev@example.com", teams=[blue_id])))
    # The developer is not a member of `blue` yet, so filing under it is refused...
    refused = dev.post("/tools", json={"name": "t-blue", "team_id": blue_id, "visibility": "team"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_team_member")
    # ...and their token's claim to it reaches nothing until they are one.
    admin = server.client(mint(claims(teams=None)))
    team_tool = admin.post("/tools", json={"name": "t-blue", "team_id": blue_id, "visibility": "team"}).json()
    public_tool = admin.post("/tools", json={"name": "t-public", "visibility": "public"}).json()
    private_tool = admin.post("/tools", json={"name": "t-private"}).json()
    assert "t-blue" not in {t["name"] for t in dev.get("/tools").json()["items"]}
    assert session.post(f"/teams/{blue_id}/members", json={"email": "dev@example.com"}).status_code == 201

    blue = server.client(mint(claims("dev@example.com", teams=[blue_id])))
    names = {t["name"] for t in blue.get("/tools").json()["items"]}
    assert {"t-blue", "t-public"} <= names
    assert "t-private" not in names
    assert blue.get(f"/tools/{private_tool['id']}").status_code == 404

    red = server.client(mint(claims("other@example.com", teams=["red"])))
    assert red.get(f"/tools/{team_tool['id']}").status_code == 404
    assert "t-blue" not in {t["name"] for t in red.get("/tools").json()["items"]}

    public_only = server.client(mint(claims("dev@example.com")))  # no teams claim: public only
    assert {t["name"] for t in public_only.get("/tools").json()["items"]} == {"t-public"}
    assert public_only.get(f"/tools/{public_tool['id']}").status_code == 200

    everything = {t["name"] for t in admin.get("/tools").json()["items"]}
    assert {"t-blue", "t-public", "t-private"} <= everything


def test_each_verb_needs_its_permission(server: Gateway) -> None:
    viewer = server.client(mint(claims("view@example.com", teams=[])))
    refused = viewer.post("/prompts", json={"name": "p-x", "template": "hi"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_missing")
    assert viewer.get("/prompts").status_code == 200


def test_only_the_owner_changes_an_item(server: Gateway) -> None:
    dev = server.client(mint(claims("dev@example.com", teams=[])))
    item = dev.post("/prompts", json={"name": "p-mine", "template": "Hello {{ name }}", "visibility": "public"}).json()
    other = server.client(mint(claims("other@example.com", teams=[])))
    assert other.patch(f"/prompts/{item['id']}", json={"template": "mine now"}).json()["error"]["code"] == "not_owner"
    assert dev.patch(f"/prompts/{item['id']}", json={"template": "Hi {{ name }}"}).json()["template"] == "Hi {{ name }}"
    denied = dev.delete(f"/prompts/{item['id']}")  # developers hold no *.delete permission
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "permission_missing")
    admin = server.client(mint(claims(teams=None)))
    assert admin.delete(f"/prompts/{item['id']}").status_code == 204
    assert dev.get(f"/prompts/{item['id']}").status_code == 404


def test_content_pipeline_refuses_and_stores_nothing(server: Gateway) -> None:
    dev = server.client(mint(claims("dev@example.com", teams=[])))
    template = dev.post("/resources", json={"name": "r-tpl", "uri": "file:///a", "content": "Hello {{ user.name }}"})
    assert (template.status_code, template.json()["error"]["code"]) == (422, "content_blocked")
    assert "{{" not in template.text, "the match is never echoed"
    pii = dev.post("/resources", json={"name": "r-pii", "uri": "file:///b", "content": "SSN 123-45-6789"})
    assert (pii.status_code, pii.json()["error"]["code"]) == (422, "content_pii")
    big = dev.post("/resources", json={"name": "r-big", "uri": "file:///c", "content": "a" * 200_000})
    assert (big.status_code, big.json()["error"]["code"]) == (413, "content_too_large")
    assert "102400" in big.json()["error"]["message"]
    names = {r["name"] for r in dev.get("/resources").json()["items"]}
    assert not names & {"r-tpl", "r-pii", "r-big"}
    gadget = dev.post("/prompts", json={"name": "p-gadget", "template": "{{ self.__init__.__globals__ }}"})
    assert gadget.json()["error"]["code"] == "content_blocked"
    fine = dev.post("/prompts", json={"name": "p-fine", "template": "Please select an option: {{ opt }}"})
    assert fine.status_code == 201
    log = server.log.read_text()
    violation = json.loads(next(line for line in log.splitlines() if '"content_violation"' in line).split(": ", 1)[1])
    assert violation["user"] == "d***@example.com"
    assert violation["action"] == "block"
    assert violation["rule"].startswith("content/")


def test_html_resources_are_sanitized_when_served(server: Gateway) -> None:
    dev = server.client(mint(claims("dev@example.com", teams=[])))
    created = dev.post(
        "/resources",
        json={"name": "r-html", "uri": "file:///page.html", "mime_type": "text/html", "content": "<p>Plain page</p>"},
    )
    assert created.status_code == 201
    assert created.json()["content"] == "<p>Plain page</p>"


def test_cursor_pagination_walks_every_item_once(server: Gateway) -> None:
    admin = server.client(mint(claims(teams=None)))
    for i in range(7):
        admin.post("/servers", json={"name": f"s-{i}", "visibility": "public"})
    seen, cursor = [], None
    while True:
        page = admin.get("/servers", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [s["name"] for s in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert sorted(n for n in seen if n.startswith("s-")) == [f"s-{i}" for i in range(7)]
    assert len(seen) == len(set(seen))
    assert admin.get("/servers", params={"cursor": "%%%"}).status_code == 400


def test_bulk_import_is_all_or_nothing(server: Gateway) -> None:
    dev = server.client(mint(claims("dev@example.com", teams=[])))
    items = [
        {"kind": "tools", "name": "b-tool"},
        {"kind": "resources", "name": "b-res", "uri": "file:///x", "content": "<script>alert(1)</script>"},
        {"kind": "prompts", "name": "b-prompt"},
        {"kind": "gadgets", "name": "b-what"},
    ]
    refused = dev.post("/bulk-import", json={"items": items})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "bulk_import_rejected")
    assert [p["index"] for p in refused.json()["error"]["details"]] == [1, 2, 3]
    assert "b-tool" not in {t["name"] for t in dev.get("/tools").json()["items"]}
    tools_only = server.client(mint(claims("dev@example.com", teams=[], scopes={"permissions": ["tools.create"]})))
    sneaky = tools_only.post("/bulk-import", json={"items": [{"kind": "prompts", "name": "b-sneaky", "template": "x"}]})
    assert sneaky.json()["error"]["details"][0]["code"] == "permission_missing"
    good = [{"kind": "tools", "name": "b-tool"}, {"kind": "prompts", "name": "b-prompt", "template": "Hi {{ x }}"}]
    accepted = dev.post("/bulk-import", json={"items": good})
    assert accepted.json()["imported"] == 2
