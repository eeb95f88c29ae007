"""Parse policy text into documents that remember where every value was written.

The shell reads files; this module only ever sees `(label, text)` pairs, so it does no
I/O and can be fed anything a test or a fuzzer makes up. Each document is composed into a
node tree by ruamel.yaml (with its C parser when installed, about ten times faster than
the round-trip loader), constructed into plain data, and the two are walked together to
record the line and column of every key and item: that index is what lets every later
stage point an author at `file:line:col`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from engine.errors import Location, PolicyError

__all__ = [
    "API_VERSION",
    "KINDS",
    "Document",
    "JSONValue",
    "Position",
    "Source",
    "load_documents",
    "only_tests",
    "plain",
]

JSONValue = Any
"""A value as YAML or JSON gives it: dict, list, str, int, float, bool or None."""

API_VERSION: Final = "policygate/v1"

KINDS: Final = (
    "TeamVisibility",
    "PermissionSets",
    "Routes",
    "TokenRules",
    "ContentRules",
    "SizeLimits",
    "Network",
    "Features",
    "RateLimits",
    "WellKnown",
    "PolicyTest",
)

_NAME: Final = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")
_MAX_VALUES: Final = 200_000  # the default policy set holds about 9,000
_MAX_DEPTH: Final = 100  # the default policy set nests 10 deep


@dataclass(frozen=True, slots=True)
class Source:
    """Policy text and the label its locations are reported under (usually a path)."""

    label: str
    text: str


Position = tuple[int, int, int, int]
"""Where a value sits: key line and column, value line and column (all 1-based)."""

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its envelope, its spec as plain data, and where things are.

    `positions` maps a path from the document root (`("spec", "routes", 3, "id")`) to where
    that value and its key were written.
    """

    kind: str
    name: str
    spec: JSONValue
    label: str
    positions: Mapping[Path, Position]
    index: int
    overridden: Mapping[Path, str] = field(default_factory=dict)
    """Values an environment variable set, by path, with the variable's name: an error in
    one of them (or beneath it) is reported at the variable, not at the YAML it replaced."""

    @property
    def where(self) -> Location:
        """The document's own position: the line of its `kind` key."""
        return self._at(("kind",), key=True)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> Location:
        """Find where the value at `path` under `spec` was written.

        A path into something missing resolves to its deepest existing parent, so "missing
        field" errors point at the mapping that lacks it. With `key=True` the location of
        the last key itself is returned, which reads better for "unknown field".
        """
        return self._at(("spec", *path), key=key)

    def _at(self, path: Path, *, key: bool) -> Location:
        for end in range(len(path), 0, -1):
            variable = self.overridden.get(path[:end])
            if variable is not None:
                return Location(f"env:{variable}")
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                line, col = (found[0], found[1]) if key else (found[2], found[3])
                return Location(self.label, line, col)
        return Location(self.label)


def load_documents(sources: Iterable[Source]) -> tuple[list[Document], list[PolicyError]]:
    """Parse every source; return the well-formed documents and every error found.

    A source that fails to parse contributes the documents before the failure and one
    error at the place the parser stopped.
    """
    documents: list[Document] = []
    errors: list[PolicyError] = []
    for source in sources:
        for index, raw, positions in _parse(source, errors):
            document = _envelope(source.label, index, raw, positions, errors)
            if document is not None:
                documents.append(document)
    return documents, errors


def _parse(source: Source, errors: list[PolicyError]) -> Iterator[tuple[int, Any, dict[Path, Position]]]:
    yaml = YAML(typ="safe")
    try:
        deep = _past_depth(yaml.parse(source.text))
        if deep is not None:
            where = Location(source.label, deep.start_mark.line + 1, deep.start_mark.column + 1)
            errors.append(PolicyError(where, "yaml.syntax", f"values are nested more than {_MAX_DEPTH} deep"))
            return
        for index, node in enumerate(yaml.compose_all(source.text)):
            if _expanded_size(node) > _MAX_VALUES:
                mark = node.start_mark
                where = Location(source.label, mark.line + 1, mark.column + 1)
                message = f"document {index + 1} holds more than {_MAX_VALUES} values once its aliases are expanded"
                errors.append(PolicyError(where, "yaml.too_large", message))
                return
            data = plain(yaml.constructor.construct_document(node))
            positions: dict[Path, Position] = {}
            _index_positions(node, data, (), node, positions)
            yield index, data, positions
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(source.label, mark.line + 1, mark.column + 1) if mark else Location(source.label)
        problem = (err.problem or err.context or "invalid YAML").strip()
        errors.append(PolicyError(where, "yaml.syntax", _one_line(problem)))
    except RecursionError:
        errors.append(PolicyError(Location(source.label), "yaml.syntax", "document is nested too deeply"))
    except Exception as err:
        # SECURITY: whatever the parser trips over, a policy source becomes a policy error,
        # never a crash of the lint run or of a reload.
        errors.append(PolicyError(Location(source.label), "yaml.syntax", _one_line(str(err)) or "invalid YAML"))


def _past_depth(events: Iterable[Event]) -> Event | None:
    """The first collection opened past `_MAX_DEPTH`, or None.

    Measured on the parser's flat event stream, before any node tree is built: the
    C composer recurses, and some 30,000 brackets (60 KB) overflow the C stack and end
    the process, which no `except` can catch.
    """
    depth = 0
    for event in events:
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                return event
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
    return None


def only_tests(text: str) -> bool:
    """Whether every document in `text` is surely a `PolicyTest`, read off the parser's
    events: about a sixth of the cost of building the documents, which the gateway,
    never running test cases, can skip.

    Any doubt answers False and the file is read as any other (a rule document left
    out would have the gateway enforce less than `lint` and `test` checked): a parse
    error, a document without a `kind`, a `kind` written as an alias, a collection or
    with a tag, two of them, a merge key, a key that is not a plain string.
    """
    kinds: list[object] = []
    try:
        depth, is_key, key = 0, True, None
        for event in YAML(typ="safe").parse(text):
            if isinstance(event, DocumentStartEvent):
                kinds.append(None)
                is_key = True
            elif isinstance(event, DocumentEndEvent):
                if kinds[-1] != "PolicyTest":
                    return False
            elif depth == 1 and not isinstance(event, CollectionEndEvent):
                value = event.value if isinstance(event, ScalarEvent) and event.tag is None else None
                if is_key:
                    if not isinstance(value, str) or value == "<<":
                        return False
                    key = value
                elif key == "kind":
                    # A rule file is told by its first `kind`, without reading on.
                    if kinds[-1] is not None or value != "PolicyTest":
                        return False
                    kinds[-1] = value
                is_key = not is_key
            if isinstance(event, CollectionStartEvent):
                depth += 1
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, AliasEvent) and depth == 0:
                return False
    except Exception:  # anything the parser trips over is for the full read to report
        return False
    return bool(kinds)


def _expanded_size(root: Node) -> int:
    """How many values a document holds with every alias spelled out, counted without
    spelling them out; past `_MAX_VALUES` the count stops.

    A few hundred bytes of nested aliases (the "billion laughs") spell out to billions
    of values, and everything after parsing walks the spelled-out values; an alias
    inside its own anchor never ends at all.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    path: set[int] = set()  # the nodes whose children are being counted
    while stack:
        node, counted = stack.pop()
        if counted:
            path.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > _MAX_VALUES:
                return size
            sizes[id(node)] = size
        elif id(node) in path:
            return _MAX_VALUES + 1
        elif id(node) not in sizes:  # an alias of a node counted already costs nothing more
            path.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _index_positions(node: Node, data: Any, path: Path, key_node: Node, out: dict[Path, Position]) -> None:
    """Record where `data` (constructed from `node`) and everything under it was written."""
    if path in out:
        return  # an alias repeats a subtree already indexed
    out[path] = (
        key_node.start_mark.line + 1,
        key_node.start_mark.column + 1,
        node.start_mark.line + 1,
        node.start_mark.column + 1,
    )
    if isinstance(node, MappingNode) and isinstance(data, dict):
        for k_node, v_node in node.value:
            key = getattr(k_node, "value", None)
            if isinstance(key, str) and key in data:
                _index_positions(v_node, data[key], (*path, key), k_node, out)
    elif isinstance(node, SequenceNode) and isinstance(data, list):
        for i, item in enumerate(node.value):
            if i < len(data):
                _index_positions(item, data[i], (*path, i), item, out)


def _envelope(
    label: str, index: int, raw: Any, positions: dict[Path, Position], errors: list[PolicyError]
) -> Document | None:
    if raw is None:
        return None
    document = Document("", "", None, label, MappingProxyType(positions), index)
    if not isinstance(raw, dict):
        errors.append(
            PolicyError(
                document._at((), key=False),
                "document.not_mapping",
                f"document {index + 1} is not a mapping",
            )
        )
        return None
    problems = len(errors)
    version = raw.get("apiVersion")
    if version != API_VERSION:
        errors.append(
            PolicyError(
                document._at(("apiVersion",), key=False),
                "document.api_version",
                f"`apiVersion` must be `{API_VERSION}`, got `{version}`",
            )
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        errors.append(
            PolicyError(
                document._at(("kind",), key=False),
                "document.unknown_kind",
                f"unknown kind `{kind}`: expected one of {', '.join(KINDS)}",
            )
        )
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        errors.append(
            PolicyError(
                document._at(("metadata", "name"), key=False),
                "document.name",
                f"`metadata.name` must be a lowercase dns-style name, got `{name}`",
            )
        )
    for key in raw:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            errors.append(
                PolicyError(
                    document._at((str(key),), key=True),
                    "document.unknown_field",
                    f"unknown top-level field `{key}`",
                )
            )
    if "spec" not in raw:
        errors.append(PolicyError(document._at((), key=False), "document.no_spec", "document has no `spec`"))
    if len(errors) > problems:
        return None
    return Document(str(kind), str(name), raw["spec"], label, MappingProxyType(positions), index)


def plain(value: Any) -> JSONValue:
    """Turn ruamel's annotated containers and scalars into plain JSON-like values.

    YAML timestamps become ISO strings so that schemas can treat them as text.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
