"""The router must pick the route a plain scan in document order would pick.

`match_route` answers from a dict of literal paths and from one regex of alternatives
per method and first segment. A route put in the wrong bucket, a group numbered wrong,
or a trailing slash handled differently would send a request to another route, with
another route class and permission. So the router is checked against the definition:
the first route in document order whose pattern matches the path without its trailing
slashes and whose methods admit the method.
"""

from __future__ import annotations

import re

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from engine.decide.access import AccessTable, Route, match_route
from engine.policy import Source, compile_policy
from engine.schemas import validators
from tests.conftest import default_layer

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]

# Overlaps on purpose: parameters before literals, catch-alls before and after specific
# routes, a route open to every method between method-bound ones, a root catch-all last.
TRICKY = """\
apiVersion: policygate/v1
kind: Routes
metadata:
  name: default
spec:
  classes:
    - {name: public, authentication: none, serverScope: exempt}
    - {name: api, authentication: required, serverScope: deny}
    - {name: mcp, authentication: required, serverScope: own_server}
    - {name: by-tenant, authentication: required, serverScope: own_server, serverParam: tenant}
  routes:
    - {id: health, class: public, path: /health, methods: [GET]}
    - {id: tenant-any, class: by-tenant, path: "/{tenant}/status", methods: [GET]}
    - {id: status-literal, class: api, path: /servers/status, methods: [GET, POST]}
    - {id: server-mcp, class: mcp, path: "/servers/{server_id}/mcp", methods: [POST]}
    - {id: server-any, class: mcp, path: "/servers/{server_id}/**"}
    - {id: server-mcp-get, class: mcp, path: "/servers/{server_id}/mcp", methods: [GET]}
    - {id: tools-get, class: api, path: /tools, methods: [GET]}
    - {id: tools-all, class: api, path: "/tools/**"}
    - {id: tool-one, class: api, path: "/tools/{id}", methods: [DELETE]}
    - {id: deep, class: api, path: "/a/{x}/b/{y}", methods: [PUT]}
    - {id: dotted, class: api, path: /a.b/c+d, methods: [GET]}
    - {id: root, class: public, path: /, methods: [GET]}
    - {id: catch-all, class: api, path: "/**", methods: [OPTIONS]}
"""


_PARAM = re.compile(r"\(\?P<(\w+)>\[\^/\]\+\)")


def _reference(table: AccessTable, method: str, path: str) -> tuple[Route, str | None] | None:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    for route in table.routes:
        found = route.pattern.fullmatch(path)
        if found is not None and (route.methods is None or method in route.methods):
            return route, found.groupdict().get(route.route_class.server_param)
    return None


@pytest.fixture(scope="module")
def tables() -> list[AccessTable]:
    """The default routes, and the tricky ones laid over them."""
    default = compile_policy([default_layer()], validators=validators())
    tricky = compile_policy([default_layer(), [Source("tricky/routes.yaml", TRICKY)]], validators=validators())
    return [default.snapshot.access, tricky.snapshot.access]


def _segments(table: AccessTable) -> list[str]:
    """Every literal segment the routes use, and a few that none does."""
    words = {"x", "srv-1", "mcp", "status", "", "a", "b"}
    for route in table.routes:
        words.update(s for s in route.pattern.pattern.replace("\\", "").split("/") if s and "(" not in s)
    return sorted(words)


def _paths(table: AccessTable) -> st.SearchStrategy[str]:
    segment = st.sampled_from(_segments(table)) | st.text("abc-_.%", min_size=1, max_size=6)
    return st.builds(
        lambda parts, slashes: "/" + "/".join(parts) + "/" * slashes,
        st.lists(segment, max_size=5),
        st.integers(0, 2),
    )


def test_the_tricky_routes_reach_the_routes_a_scan_would(tables: list[AccessTable]) -> None:
    table = tables[1]
    cases = {
        ("GET", "/servers/status"): ("routes/tenant-any", "servers"),
        ("POST", "/servers/status"): ("routes/status-literal", None),
        ("GET", "/servers/s1/mcp"): ("routes/server-any", "s1"),
        ("POST", "/servers/s1/mcp/"): ("routes/server-mcp", "s1"),
        ("DELETE", "/tools/t1"): ("routes/tools-all", None),
        ("GET", "/tools//"): ("routes/tools-get", None),
        ("GET", "//"): ("routes/root", None),
        ("OPTIONS", "/nowhere/at/all"): ("routes/catch-all", None),
        ("GET", "/a.b/c+d"): ("routes/dotted", None),
    }
    for (method, path), (rule, server) in cases.items():
        found = match_route(table, method, path)
        assert found is not None, (method, path)
        assert (found[0].ref.id, found[1]) == (rule, server), (method, path)
        assert found == _reference(table, method, path)
    assert match_route(table, "GET", "/a.b/c") is None
    assert match_route(table, "PUT", "/a/1/b") is None


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_router_agrees_with_a_scan_in_document_order(tables: list[AccessTable], data: st.DataObject) -> None:
    for table in tables:
        method = data.draw(st.sampled_from(METHODS))
        path = data.draw(_paths(table))
        assert match_route(table, method, path) == _reference(table, method, path), (method, path)


def test_every_route_of_every_table_is_reachable_as_the_scan_says(tables: list[AccessTable]) -> None:
    for table in tables:
        for route in table.routes:
            path = _PARAM.sub(r"\1-1", route.pattern.pattern).replace("(?:/.*)?", "/more/here")
            path = path.replace("\\", "")
            for method in sorted(route.methods or METHODS):
                assert match_route(table, method, path) == _reference(table, method, path), (method, path)
