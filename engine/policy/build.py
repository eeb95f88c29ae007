"""Turn policy sources into a Snapshot through an ordered list of named passes.

Each pass takes the build state and returns a new one, adding errors rather than raising,
so an author sees every problem a pass can find at once. The driver stops after the first
pass that found errors (later passes would only report consequences) and caps the list at
an error limit. Pass timings are recorded only when the caller hands in a clock, which
keeps this module free of clock reads. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from engine.decide.access import AccessTable, build_access_table
from engine.decide.content import ContentTable, build_content_table
from engine.decide.limits import LimitTable, build_limit_table
from engine.decide.model import RuleRef
from engine.decide.tokens import TokenTable, build_token_table
from engine.decide.visibility import VisibilityTable, build_visibility_table
from engine.errors import Location, PolicyError, PolicyErrors, Severity
from engine.policy.check import check_documents
from engine.policy.load import Document, Source, load_documents
from engine.policy.overrides import Applied, apply_overrides, custom_patterns
from engine.policy.snapshot import Snapshot
from engine.policy.surface import (
    NetworkTable,
    WellKnownTable,
    build_network_table,
    build_well_known_table,
)

__all__ = ["ERROR_LIMIT", "PASSES", "Build", "Pass", "compile_policy"]

ERROR_LIMIT: Final = 20

SINGLETONS: Final = (
    "TeamVisibility",
    "PermissionSets",
    "Routes",
    "TokenRules",
    "SizeLimits",
    "Network",
    "Features",
    "RateLimits",
    "WellKnown",
)
"""Kinds a policy set holds exactly one of. ContentRules and PolicyTest may repeat."""


@dataclass(frozen=True, slots=True)
class State:
    """Everything known part-way through a build."""

    layers: Sequence[Sequence[Source]]
    env: Mapping[str, str]
    validators: Mapping[str, Any]
    now: float | None
    documents: tuple[Document, ...] = ()
    tests: tuple[Document, ...] = ()
    applied: tuple[Applied, ...] = ()
    custom: tuple[tuple[str, Location], ...] = ()
    tables: Mapping[str, Any] = field(default_factory=dict)
    errors: tuple[PolicyError, ...] = ()
    warnings: tuple[PolicyError, ...] = ()

    def single(self, kind: str) -> Document:
        # INVARIANT: after the `index` pass every singleton kind occurs exactly once.
        return next(d for d in self.documents if d.kind == kind)

    def with_issues(self, issues: Sequence[PolicyError], **changes: Any) -> State:
        errors = tuple(i for i in issues if i.severity is Severity.ERROR)
        warnings = tuple(i for i in issues if i.severity is Severity.WARNING)
        return replace(self, errors=self.errors + errors, warnings=self.warnings + warnings, **changes)


@dataclass(frozen=True, slots=True)
class Pass:
    name: str
    run: Callable[[State], State]


@dataclass(frozen=True, slots=True)
class Build:
    """A finished build: the snapshot, and what the CLI shows besides it."""

    snapshot: Snapshot
    documents: tuple[Document, ...]
    tests: tuple[Document, ...]
    applied: tuple[Applied, ...]
    timings: tuple[tuple[str, float], ...]


def _load(state: State) -> State:
    """Parse every layer; a later layer's document replaces one of the same kind and name.

    Test documents overlay the same way, so an example that changes a rule can replace the
    default cases that assert the old behaviour.
    """
    merged: dict[tuple[str, str], Document] = {}
    order: list[tuple[str, str]] = []
    errors: list[PolicyError] = []
    for layer in state.layers:
        documents, problems = load_documents(layer)
        errors.extend(problems)
        seen: dict[tuple[str, str], Document] = {}
        for document in documents:
            key = (document.kind, document.name)
            if key in seen:
                errors.append(
                    PolicyError(
                        document.where,
                        "document.duplicate",
                        f"{document.kind} `{document.name}` is already defined at {seen[key].where}",
                    )
                )
                continue
            seen[key] = document
            if key not in merged:
                order.append(key)
            merged[key] = document
    policy = tuple(merged[k] for k in order if k[0] != "PolicyTest")
    tests = tuple(merged[k] for k in order if k[0] == "PolicyTest")
    return state.with_issues(errors, documents=policy, tests=tests)


def _index(state: State) -> State:
    errors: list[PolicyError] = []
    anchor = _anchor(state)
    for kind in SINGLETONS:
        found = [d for d in state.documents if d.kind == kind]
        if not found:
            errors.append(PolicyError(anchor, "set.missing_kind", f"the policy set has no {kind} document"))
        for extra in found[1:]:
            errors.append(
                PolicyError(
                    extra.where,
                    "set.duplicate_kind",
                    f"only one {kind} document is allowed; `{found[0].name}` is at {found[0].where}",
                )
            )
    if not any(d.kind == "ContentRules" for d in state.documents):
        errors.append(PolicyError(anchor, "set.missing_kind", "the policy set has no ContentRules document"))
    return state.with_issues(errors)


def _check_documents(state: State) -> State:
    """Schema-check the documents as written, before any override touches them."""
    return state.with_issues(check_documents((*state.documents, *state.tests), state.validators))


def _overrides(state: State) -> State:
    documents, applied, errors = apply_overrides(state.documents, state.env)
    custom, custom_errors = custom_patterns(state.env)
    overridden = {(a.kind, d.name, str(a.path[0])): a.where for a in applied for d in documents if d.kind == a.kind}
    changed = [d for d in documents if any(a.kind == d.kind for a in applied)]
    schema_errors = check_documents(changed, state.validators, overridden)
    return state.with_issues(
        [*errors, *custom_errors, *schema_errors],
        documents=tuple(documents),
        applied=tuple(applied),
        custom=tuple(custom),
    )


def _table(name: str, build: Callable[[State], tuple[Any, list[PolicyError]]]) -> Pass:
    def run(state: State) -> State:
        table, issues = build(state)
        tables = dict(state.tables)
        tables[name] = table
        return state.with_issues(issues, tables=tables)

    return Pass(f"build_{name}", run)


PASSES: Final[tuple[Pass, ...]] = (
    Pass("load", _load),
    Pass("index", _index),
    Pass("check_schemas", _check_documents),
    Pass("apply_overrides", _overrides),
    _table(
        "access",
        lambda s: build_access_table(s.single("Routes"), s.single("PermissionSets"), s.single("Features")),
    ),
    _table("tokens", lambda s: build_token_table(s.single("TokenRules"))),
    _table("visibility", lambda s: build_visibility_table(s.single("TeamVisibility"))),
    _table(
        "content",
        lambda s: build_content_table(
            [d for d in s.documents if d.kind == "ContentRules"], s.single("SizeLimits"), s.custom
        ),
    ),
    _table("limits", lambda s: build_limit_table(s.single("RateLimits"))),
    _table("network", lambda s: build_network_table(s.single("Network"))),
    _table("well_known", lambda s: build_well_known_table(s.single("WellKnown"), s.now)),
)


def compile_policy(
    layers: Sequence[Sequence[Source]],
    *,
    validators: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    now: float | None = None,
    clock: Callable[[], float] | None = None,
    error_limit: int = ERROR_LIMIT,
) -> Build:
    """Build a snapshot from layers of sources (a base policy set, then overlays).

    `validators` holds the JSON Schema validator of each kind; `env` the environment
    variables to apply as overrides; `now` enables time-dependent warnings.

    Raises:
        PolicyErrors: the sources do not make a valid policy; nothing was built.
    """
    state = State(layers, env or {}, validators, now)
    timings: list[tuple[str, float]] = []
    for step in PASSES:
        started = clock() if clock else 0.0
        state = step.run(state)
        if clock:
            timings.append((step.name, clock() - started))
        if state.errors:
            errors = list(state.errors)
            if len(errors) > error_limit:
                errors = [
                    *sorted(errors)[:error_limit],
                    PolicyError(errors[0].where, "errors.limit", f"stopped after {error_limit} errors"),
                ]
            raise PolicyErrors(errors)
    snapshot = _assemble(state)
    return Build(snapshot, state.documents, state.tests, state.applied, tuple(timings))


def _assemble(state: State) -> Snapshot:
    tables = state.tables
    access: AccessTable = tables["access"]
    tokens: TokenTable = tables["tokens"]
    visibility: VisibilityTable = tables["visibility"]
    content: ContentTable = tables["content"]
    limits: LimitTable = tables["limits"]
    network: NetworkTable = tables["network"]
    well_known: WellKnownTable = tables["well_known"]
    refs: list[RuleRef] = [access.default, access.mcp_unknown, visibility.anonymous]
    refs.extend(route.ref for route in access.routes)
    refs.extend(m.ref for m in access.mcp_methods.values())
    refs.extend(access.feature_refs.values())
    refs.extend(tokens.refs.values())
    refs.extend(cell.ref for cell in visibility.cells.values())
    if visibility.session is not None:
        refs.append(visibility.session.ref)
    for scanner in content.scanners.values():
        refs.append(scanner.size_ref)
        refs.extend(rule.ref for rule in scanner.rules)
    refs.extend(bucket.ref for bucket in limits.buckets)
    return Snapshot(
        version=_version(state),
        access=access,
        tokens=tokens,
        visibility=visibility,
        content=content,
        limits=limits,
        network=network,
        well_known=well_known,
        origin=MappingProxyType({ref.id: ref.where for ref in refs}),
        warnings=tuple(sorted(state.warnings)),
    )


def _version(state: State) -> str:
    canonical = json.dumps(
        {
            "documents": [[d.kind, d.name, d.spec] for d in sorted(state.documents, key=lambda d: (d.kind, d.name))],
            "custom": [pattern for pattern, _ in state.custom],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _anchor(state: State) -> Location:
    for layer in state.layers:
        for source in layer:
            return Location(source.label)
    return Location("<no sources>")
