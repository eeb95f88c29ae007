"""The catalog over REST: visibility as 404s, permissions, the content pipeline, bulk import."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
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


def _session(server: Gateway, email: str) -> httpx.Client:
    """A signed-in user's client: unlike an API token without a teams list, a session
    sees its user's private items, so what it created it can read back."""
    return server.client(server.login(email, PASSWORD))


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
    dev = _session(server, "dev@example.com")
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
    dev = _session(server, "dev@example.com")
    created = dev.post(
        "/resources",
        json={"name": "r-html", "uri": "file:///page.html", "mime_type": "text/html", "content": "<p>Plain page</p>"},
    )
    assert created.status_code == 201
    assert created.json()["content"] == "<p>Plain page</p>"


def test_a_resource_is_judged_as_it_will_be_served(server: Gateway) -> None:
    """The sanitizer decodes character references and drops unknown tags: text that
    passed can come out of it as text that would not."""
    dev = _session(server, "dev@example.com")
    hidden = {
        "name": "r-joined",
        "uri": "file:///joined",
        "mime_type": "text/html",
        "content": "SSN 123-45-<x></x>6789",
    }
    refused = dev.post("/resources", json=hidden)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "content_pii")
    plain = dev.post("/resources", json={**hidden, "mime_type": "text/plain"})
    assert plain.status_code == 201, "as plain text it is served as written, tags and all"
    relabelled = dev.patch(f"/resources/{plain.json()['id']}", json={"mime_type": "text/html"})
    assert (relabelled.status_code, relabelled.json()["error"]["code"]) == (422, "content_pii")
    assert dev.get(f"/resources/{plain.json()['id']}").json()["mime_type"] == "text/plain"
    animated = '<svg><a><animate attributeName="href" values="&#106;avascript:go()"/><text>Caf&#233;</text></a></svg>'
    svg = dev.post("/resources", json={**hidden, "name": "r-svg", "mime_type": "image/svg+xml", "content": animated})
    assert (svg.status_code, svg.json()["error"]["code"]) == (422, "content_blocked")


def test_a_resource_uri_and_type_are_no_place_for_text(server: Gateway) -> None:
    dev = _session(server, "dev@example.com")
    uri = dev.post("/resources", json={"name": "r-uri", "uri": "javascript:alert(document.cookie)//x"})
    assert (uri.status_code, uri.json()["error"]["code"]) == (422, "content_blocked")
    mime = dev.post("/resources", json={"name": "r-mime", "uri": "file:///m", "mime_type": "<b>text/plain</b>"})
    assert (mime.status_code, mime.json()["error"]["code"]) == (422, "invalid_body")
    typed = dev.post(
        "/resources", json={"name": "r-typed", "uri": "file:///t", "mime_type": "text/plain; charset=utf-8"}
    )
    assert typed.status_code == 201, typed.text


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
    dev = _session(server, "dev@example.com")
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


def test_a_resource_uri_names_one_resource(server: Gateway) -> None:
    """`resources/read` serves one resource per URI: another user's public resource must
    not take the reads of a URI that is already served."""
    dev = _session(server, "dev@example.com")
    other = server.client(mint(claims("other@example.com", teams=[])))
    first = dev.post("/resources", json={"name": "u-first", "uri": "users://7/profile", "content": "mine"})
    assert first.status_code == 201, first.text
    twin = {"name": "u-twin", "uri": "users://7/profile", "content": "theirs", "visibility": "public"}
    taken = other.post("/resources", json=twin)
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "uri_taken")
    moved = other.post("/resources", json={**twin, "uri": "users://8/profile"})
    assert moved.status_code == 201, moved.text
    onto = other.put(f"/resources/{moved.json()['id']}", json={"uri": "users://7/profile"})
    assert (onto.status_code, onto.json()["error"]["code"]) == (409, "uri_taken")
    assert other.put(f"/resources/{moved.json()['id']}", json={"uri": "users://8/profile"}).status_code == 200
    items = [
        {"kind": "resources", "name": "u-bulk", "uri": "users://7/profile", "content": "x", "visibility": "public"},
        {"kind": "resources", "name": "u-bulk-1", "uri": "users://9/profile", "content": "x", "visibility": "public"},
        {"kind": "resources", "name": "u-bulk-2", "uri": "users://9/profile", "content": "x", "visibility": "public"},
    ]
    refused = other.post("/bulk-import", json={"items": items})
    assert [(d["index"], d["code"]) for d in refused.json()["error"]["details"]] == [(0, "uri_taken"), (2, "uri_taken")]


def test_a_server_shows_only_the_members_its_reader_can_see(server: Gateway) -> None:
    admin = server.client(mint(claims(teams=None)))
    hidden = admin.post("/tools", json={"name": "s-hidden"}).json()  # private to the admin
    shown = admin.post("/tools", json={"name": "s-shown", "visibility": "public"}).json()
    bundle = admin.post("/servers", json={"name": "s-bundle", "visibility": "public",
                                          "tool_ids": [hidden["id"], shown["id"]]})  # fmt: skip
    assert bundle.status_code == 201
    assert bundle.json()["tool_ids"] == [hidden["id"], shown["id"]]
    other = server.client(mint(claims("other@example.com", teams=[])))
    assert other.get(f"/servers/{bundle.json()['id']}").json()["tool_ids"] == [shown["id"]]
    listed = {s["name"]: s for s in other.get("/servers").json()["items"]}
    assert listed["s-bundle"]["tool_ids"] == [shown["id"]]


def test_json_fields_pass_the_content_pipeline(server: Gateway) -> None:
    dev = _session(server, "dev@example.com")
    arguments = [{"name": "ssn", "description": "for example 123-45-6789"}]
    prompt = dev.post("/prompts", json={"name": "p-args", "template": "hi", "arguments": arguments})
    assert (prompt.status_code, prompt.json()["error"]["code"]) == (422, "content_pii")
    schema = {"type": "object", "properties": {"q": {"description": "<script>alert(1)</script>"}}}
    tool = dev.post("/tools", json={"name": "t-schema", "input_schema": schema})
    assert (tool.status_code, tool.json()["error"]["code"]) == (422, "content_blocked")
    assert "p-args" not in {p["name"] for p in dev.get("/prompts").json()["items"]}
    assert "t-schema" not in {t["name"] for t in dev.get("/tools").json()["items"]}


def test_input_the_store_cannot_hold_is_refused_clearly(server: Gateway) -> None:
    dev = _session(server, "dev@example.com")
    surrogate = dev.post(
        "/tools", content=b'{"name": "t-odd", "description": "a\\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert (surrogate.status_code, surrogate.json()["error"]["code"]) == (400, "invalid_json")
    emoji = dev.post(
        "/tools",
        content=b'{"name": "t-emoji", "description": "\\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
    )
    assert emoji.json()["description"] == "\U0001f600"
    mime = dev.post("/resources", json={"name": "r-mime", "uri": "a:b", "mime_type": "x" * 300})
    assert (mime.status_code, mime.json()["error"]["code"]) == (422, "invalid_body")
    team = dev.post("/tools", json={"name": "t-team", "team_id": "t" * 100, "visibility": "team"})
    assert (team.status_code, team.json()["error"]["code"]) == (422, "invalid_body")
    names = {t["name"] for t in dev.get("/tools").json()["items"]}
    assert not names & {"t-odd", "t-team"}


def test_a_pattern_holds_for_the_whole_value(server: Gateway) -> None:
    """`$` also matches before a final newline: such a value must not pass for a name,
    a URL or a header the gateway sends upstream."""
    admin = server.client(mint(claims(teams=None)))
    refused = [
        admin.post("/tools", json={"name": "t-line\n"}),
        admin.post("/gateways", json={"name": "g-line", "url": "http://127.0.0.1:9/mcp\n"}),
        admin.post("/gateways", json={"name": "g-token", "url": "http://127.0.0.1:9/mcp",
                                      "credentials": {"bearer_token": "secret\n"}}),
    ]  # fmt: skip
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [(422, "invalid_body")] * 3
    assert "secret" not in refused[2].text
    assert not {t["name"] for t in admin.get("/tools").json()["items"]} & {"t-line", "t-line\n"}
    assert not {g["name"] for g in admin.get("/gateways").json()["items"]} & {"g-line", "g-token"}


def test_a_token_writes_only_into_teams_it_reaches(server: Gateway) -> None:
    session = server.client(server.login())
    green = session.post("/teams", json={"name": "green"}).json()["id"]
    assert session.post(f"/teams/{green}/members", json={"email": "dev@example.com"}).status_code == 201
    elsewhere = server.client(mint(claims("dev@example.com", teams=[])))
    item = {"name": "t-green", "team_id": green, "visibility": "team"}
    refused = elsewhere.post("/tools", json=item)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "team_not_in_token")
    items = [{"kind": "tools", **item}, {"kind": "tools", "name": "t-teamless", "visibility": "team"}]
    bulk = elsewhere.post("/bulk-import", json={"items": items})
    details = [(d["index"], d["code"]) for d in bulk.json()["error"]["details"]]
    assert details == [(0, "team_not_in_token"), (1, "invalid_body")]
    reaching = server.client(mint(claims("dev@example.com", teams=[green])))
    assert reaching.post("/tools", json=item).status_code == 201


def test_a_public_only_token_writes_only_public_items(server: Gateway) -> None:
    admin = server.client(mint(claims(teams=None)))
    public_only = server.client(mint(claims("dev@example.com", teams=[])))
    for body in ({"name": "t-hidden"}, {"name": "t-hidden", "visibility": "private"}):
        refused = public_only.post("/tools", json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "private_not_in_token")
    shown = public_only.post("/tools", json={"name": "t-shown", "visibility": "public"}).json()
    refused = public_only.patch(f"/tools/{shown['id']}", json={"visibility": "private"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "private_not_in_token")
    assert public_only.get(f"/tools/{shown['id']}").json()["visibility"] == "public"
    bulk = public_only.post("/bulk-import", json={"items": [{"kind": "tools", "name": "t-bulk-hidden"}]})
    assert [d["code"] for d in bulk.json()["error"]["details"]] == ["private_not_in_token"]
    names = {t["name"] for t in admin.get("/tools", params={"limit": 500}).json()["items"]}
    assert not names & {"t-hidden", "t-bulk-hidden"}


def test_gateway_registration_refuses_what_it_could_not_use(server: Gateway) -> None:
    admin = server.client(mint(claims(teams=None)))
    cases = [
        ({"url": "http://127.0.0.1:99999/mcp"}, "`url`"),
        ({"url": "http://127.0.0.1:port/mcp"}, "`url`"),
        ({"credentials": {"headers": {"X-Key": "a\r\nInjected: 1"}}}, "`credentials`"),
        ({"credentials": {"headers": {"Host": "elsewhere.example"}}}, "`credentials`"),
        ({"name": "g" * 63}, "`name`"),
        ({"visibility": "team"}, "`team_id`"),
    ]
    for change, field in cases:
        answer = admin.post("/gateways", json={"name": "g-bad", "url": "http://127.0.0.1:9/mcp", **change})
        assert answer.status_code == 422, (change, answer.text)
        assert answer.json()["error"]["message"].startswith(field), (change, answer.text)
        assert "Injected" not in answer.text
    assert "g-bad" not in {g["name"] for g in admin.get("/gateways").json()["items"]}
