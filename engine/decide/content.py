r"""Content inspection: size limits, PII detectors and attack patterns, per context.

Every rule is compiled into one Hyperscan database when the policy is built, and each
context keeps its own vector of actions over those rules, `allow` where a rule does not
apply there. One database rather than one per context because Hyperscan's compile time
grows faster than linearly with the pattern set and the contexts share almost all rules:
four databases cost four times the build time for the same scan speed.

A scan is one pass of Hyperscan over the text that says which rules fired, each at most
once; only for those that apply in the context does RE2 find the exact spans
and a validator confirm PII.

That pass runs at only ~150 MB/s on plain prose: many rules hang on short common words
(`or`, `and`, `on`, `to`) that Hyperscan, which knows nothing of English, prefers as its
literals because they are longer than the punctuation the rule also needs. So a cheaper
pass goes first: a literal-only database of "gate" strings, for each rule a set of which
every match of its regex contains one, chosen to be rare in prose (`@`, `'`, `{{`,
`select`). Text holding none of them cannot match any rule and is done after that pass
(GB/s); any other text gets the full pass as before. The gate strings are derived from
each regex's parse tree, so the findings are the same as without the gate, by
construction; a rule whose regex yields no such set (say a bare `\w+`) turns the gate off.

A `hyperscan.Database` keeps its scratch space inside itself, so one database must never
be scanned from two threads at once: every scan runs on the caller's thread, and a
snapshot is not shared across worker threads. No I/O in this module.
"""

from __future__ import annotations

import functools
import itertools
import re
import re._constants as _sre  # type: ignore[import-not-found]
import re._parser as _sre_parse  # type: ignore[import-not-found]
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import hyperscan
import re2  # type: ignore[import-untyped]

from engine.decide.model import Action, Content, Denial, Finding, Reason, RuleRef
from engine.decide.validators import VALIDATORS, Span, Validator
from engine.errors import Location, PolicyError

if TYPE_CHECKING:
    from engine.policy.load import Document

__all__ = [
    "CONTEXTS",
    "ContentRule",
    "ContentTable",
    "Inspection",
    "PartsInspection",
    "build_content_table",
    "inspect_content",
    "inspect_parts",
    "redact",
]

CONTEXTS: Final = ("resource", "prompt", "tool_args", "tool_result")
_STRENGTH: Final = {Action.BLOCK: 3, Action.REDACT: 2, Action.LOG: 1, Action.ALLOW: 0}
_SETTINGS: Final = ("modes", "patternDetection", "piiDetection", "redaction", "toolChanges")


class SpanFinder(Protocol):
    """What finds a rule's spans: an RE2 pattern, or Python's `re` for a prefilter rule."""

    def finditer(self, text: str) -> Iterator[Any]: ...


@dataclass(frozen=True, slots=True)
class ContentRule:
    """One compiled detector or pattern; `regex` finds spans once Hyperscan says it fired."""

    ref: RuleRef
    category: str
    pii: bool
    regex: SpanFinder
    validator: Validator | None


@dataclass(frozen=True, slots=True)
class ContextScanner:
    """The databases, the rules in Hyperscan id order, and this context's action for each.

    `gate` is the literal pre-pass (None when some rule has no gate strings): when it finds
    nothing, `database` cannot fire either and is not run.
    """

    context: str
    database: Any
    gate: Any
    rules: tuple[ContentRule, ...]
    actions: tuple[Action, ...]
    max_bytes: int
    size_ref: RuleRef
    database_bytes: int


@dataclass(frozen=True, slots=True)
class ContentTable:
    scanners: Mapping[str, ContextScanner]
    redaction: str
    pattern_mode: str
    pii_mode: str
    rule_count: int
    tool_changes: str = "block"


@dataclass(frozen=True, slots=True)
class Inspection:
    """What inspecting one body found, and the denial it leads to, if any."""

    findings: tuple[Finding, ...]
    denial: Denial | None

    @property
    def action(self) -> Action:
        """The strongest action any finding asks for."""
        return max((f.action for f in self.findings), key=_STRENGTH.__getitem__, default=Action.ALLOW)


@dataclass(frozen=True, slots=True)
class PartsInspection:
    """What inspecting the texts of one body found, text by text, and the denial it leads to."""

    findings: tuple[tuple[Finding, ...], ...]
    denial: Denial | None


def inspect_content(table: ContentTable, content: Content) -> Inspection:
    """Check `content` against its context's size limit, then scan it.

    Raises:
        KeyError: the context is not one of `CONTEXTS`; callers name contexts in code.
    """
    scanner = table.scanners[content.context]
    data = content.text.encode("utf-8", "surrogatepass")
    if len(data) > scanner.max_bytes:
        return Inspection((), _too_large(content.context, scanner, len(data)))
    findings = scan(scanner, content.text, data)
    return Inspection(findings, _denial(content.context, findings, scanner))


def inspect_parts(table: ContentTable, context: str, texts: Sequence[str], size: int) -> PartsInspection:
    """Check a body of `size` bytes against the size limit, then scan each of its `texts`
    on its own (the keys and strings of a JSON value, see `engine.json_texts`).

    One gate pass over all of them first: most bodies hold no gate string at all.

    Raises:
        KeyError: the context is not one of `CONTEXTS`.
    """
    scanner = table.scanners[context]
    if size > scanner.max_bytes:
        return PartsInspection((), _too_large(context, scanner, size))
    if scanner.database is None or not _gate_opens(scanner, "\n".join(texts).encode("utf-8", "surrogatepass")):
        return PartsInspection(((),) * len(texts), None)
    findings = tuple(scan(scanner, text) for text in texts)
    return PartsInspection(findings, _denial(context, tuple(f for found in findings for f in found), scanner))


def _too_large(context: str, scanner: ContextScanner, size: int) -> Denial:
    message = f"{context} content is {size} bytes; the limit is {scanner.max_bytes} bytes"
    return Reason.CONTENT_TOO_LARGE, scanner.size_ref, message


def scan(scanner: ContextScanner, text: str, data: bytes | None = None) -> tuple[Finding, ...]:
    """Every finding in `text` with its span; `data` is `text` as UTF-8 when already at hand."""
    if scanner.database is None:
        return ()
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    if not _gate_opens(scanner, data):
        return ()
    fired: list[int] = []
    scanner.database.scan(data, match_event_handler=_collect, context=fired)
    if not fired:
        return ()
    # Blocking rules first: once one holds, the text is refused whatever else it holds,
    # and every other rule needs only its first finding to be named. Until then a rule
    # that only logs is followed to `_LOGGED_PER_RULE` findings, one that redacts to all.
    findings: list[Finding] = []
    blocked = False
    for index in sorted(set(fired), key=lambda i: (scanner.actions[i] is not Action.BLOCK, i)):
        rule, action = scanner.rules[index], scanner.actions[index]
        if action is Action.ALLOW:
            continue
        limit = 1 if blocked or action is Action.BLOCK else _LOGGED_PER_RULE if action is Action.LOG else None
        found = list(itertools.islice(_findings(rule, action, text), limit))
        blocked = blocked or (action is Action.BLOCK and bool(found))
        findings += found
    findings.sort(key=lambda f: (f.start, f.end, f.rule))
    return tuple(findings)


_LOGGED_PER_RULE: Final = 100
"""Findings that are only logged, per rule and text: enough to see a pattern, and a bound
on the work and the log lines a text full of matches can cost."""


def _findings(rule: ContentRule, action: Action, text: str) -> Iterator[Finding]:
    for match in rule.regex.finditer(text):
        start, end = match.span()
        if end <= start:
            continue
        span: Span | None = (start, end) if rule.validator is None else rule.validator(text, start, end)
        if span is not None:
            yield Finding(rule.ref.id, rule.category, *span, action, rule.pii)


def redact(table: ContentTable, text: str, findings: Sequence[Finding]) -> str:
    """Replace every span whose finding asks for redaction; overlapping spans merge."""
    spans = sorted((f.start, f.end, f.category) for f in findings if f.action is Action.REDACT)
    pieces, cursor = [], 0
    for start, end, category in spans:
        if end <= cursor:
            continue
        pieces.append(text[cursor : max(start, cursor)])
        pieces.append(table.redaction.replace("{category}", category))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _gate_opens(scanner: ContextScanner, data: bytes) -> bool:
    """Whether `data` holds a gate string, without which no rule can match."""
    if scanner.gate is None:
        return True
    try:
        scanner.gate.scan(data, match_event_handler=_stop)
    except hyperscan.ScanTerminated:
        return True
    return False


def _collect(rule_id: int, start: int, end: int, flags: int, fired: list[int]) -> None:
    fired.append(rule_id)


def _stop(gate_id: int, start: int, end: int, flags: int, context: object) -> bool:
    """One gate string is enough to need the full pass; stop the gate scan there."""
    return True


def _denial(context: str, findings: tuple[Finding, ...], scanner: ContextScanner) -> Denial | None:
    blocking = [f for f in findings if f.action is Action.BLOCK]
    if not blocking:
        return None
    # Attack patterns outrank PII: the caller should hear about the attack first; within
    # each, the first finding (findings come in text order).
    first = min(blocking, key=lambda f: f.pii)
    rule = next(r for r in scanner.rules if r.ref.id == first.rule)
    reason = Reason.CONTENT_PII if first.pii else Reason.CONTENT_BLOCKED
    what = "personal data" if first.pii else "a blocked pattern"
    return (
        reason,
        rule.ref,
        f"{context} content contains {what}: rule `{first.rule}` ({first.category})",
    )


@dataclass(frozen=True, slots=True)
class _Source:
    """A rule as written, before compilation, with the place its regex was written."""

    ref: RuleRef
    category: str
    pii: bool
    regex: str
    regex_where: Location
    ignore_case: bool
    dot_all: bool
    prefilter: bool
    contexts: tuple[str, ...]
    validator: str | None


def build_content_table(
    documents: Sequence[Document],
    sizes: Document,
    custom_patterns: Sequence[tuple[str, Location]] = (),
) -> tuple[ContentTable | None, list[PolicyError]]:
    """Merge every `ContentRules` document with `SizeLimits` and compile the databases.

    Several `ContentRules` documents may contribute rules, but each setting (`modes`,
    the detection switches, the redaction text) must come from exactly one of them.
    `custom_patterns` are extra attack regexes from the environment, with their origin.
    """
    errors: list[PolicyError] = []
    settings = _settings(documents, errors)
    limits = _size_limits(sizes, errors)
    if "modes" not in settings:
        where = documents[0].where if documents else sizes.where
        errors.append(PolicyError(where, "content.modes_missing", "no ContentRules document defines `modes`"))
    if errors:
        return None, errors
    modes_doc, modes = settings["modes"]
    pattern_cfg = settings.get("patternDetection", (modes_doc, {}))[1]
    pii_cfg = settings.get("piiDetection", (modes_doc, {}))[1]
    pattern_mode = pattern_cfg.get("mode", "strict")
    pii_mode = pii_cfg.get("mode", "strict")
    for mode, owner, path in (
        (
            pattern_mode,
            settings.get("patternDetection", (modes_doc, {}))[0],
            ["patternDetection", "mode"],
        ),
        (pii_mode, settings.get("piiDetection", (modes_doc, {}))[0], ["piiDetection", "mode"]),
    ):
        if mode not in modes:
            errors.append(
                PolicyError(
                    owner.locate(path),
                    "ref.unknown_mode",
                    f"mode `{mode}` is not defined in `modes`",
                )
            )
    for mode, table in modes.items():
        for kind in ("pattern", "pii"):
            missing = [c for c in CONTEXTS if c not in table.get(kind, {})]
            if missing:
                errors.append(
                    PolicyError(
                        modes_doc.locate(["modes", mode, kind]),
                        "content.mode_incomplete",
                        f"mode `{mode}` says nothing about `{kind}` in {', '.join(missing)}",
                    )
                )
    sources = _rule_sources(documents, custom_patterns, pii_cfg, bool(pattern_cfg.get("enabled", True)), errors)
    if errors:
        return None, errors
    chosen: list[tuple[_Source, tuple[Action, ...]]] = []
    for source in sources:
        kind = "pii" if source.pii else "pattern"
        mode = modes[pii_mode if source.pii else pattern_mode][kind]
        actions = tuple(Action(mode[c]) if c in source.contexts else Action.ALLOW for c in CONTEXTS)
        if any(a is not Action.ALLOW for a in actions):
            chosen.append((source, actions))
    finders = _span_finders([s for s, _ in chosen], errors)
    database, size = _compile([s for s, _ in chosen], errors)
    if errors:
        return None, errors
    gate = _compile_gate([s for s, _ in chosen])
    rules = tuple(_compiled(s, finder) for (s, _), finder in zip(chosen, finders, strict=True))
    scanners = {
        context: ContextScanner(
            context=context,
            database=database,
            gate=gate,
            rules=rules,
            actions=tuple(actions[n] for _, actions in chosen),
            max_bytes=limits[context][0],
            size_ref=limits[context][1],
            database_bytes=size,
        )
        for n, context in enumerate(CONTEXTS)
    }
    redaction = settings.get("redaction", (modes_doc, "[REDACTED:{category}]"))[1]
    # SECURITY: a changed upstream tool is refused unless the policy says to only flag it.
    tool_changes = str(settings.get("toolChanges", (modes_doc, "block"))[1])
    table = ContentTable(MappingProxyType(scanners), redaction, pattern_mode, pii_mode, len(sources), tool_changes)
    return table, []


def _settings(documents: Sequence[Document], errors: list[PolicyError]) -> dict[str, tuple[Document, Any]]:
    found: dict[str, tuple[Document, Any]] = {}
    for doc in documents:
        for key in _SETTINGS:
            if key not in doc.spec:
                continue
            if key in found:
                first = found[key][0].locate([key], key=True)
                errors.append(
                    PolicyError(
                        doc.locate([key], key=True),
                        "content.setting_duplicate",
                        f"`{key}` is already set at {first}",
                    )
                )
            else:
                found[key] = (doc, doc.spec[key])
    return found


def _size_limits(doc: Document, errors: list[PolicyError]) -> dict[str, tuple[int, RuleRef]]:
    limits: dict[str, tuple[int, RuleRef]] = {}
    for i, raw in enumerate(doc.spec["limits"]):
        context, limit, bounds = raw["context"], raw["maxBytes"], raw["range"]
        where = doc.locate(["limits", i, "maxBytes"])
        if context in limits:
            errors.append(
                PolicyError(
                    doc.locate(["limits", i, "context"]),
                    "size.context_duplicate",
                    f"context `{context}` has two limits",
                )
            )
        elif bounds["min"] > bounds["max"]:
            errors.append(
                PolicyError(
                    doc.locate(["limits", i, "range"]),
                    "size.range_invalid",
                    f"range minimum {bounds['min']} is above its maximum {bounds['max']}",
                )
            )
        elif not bounds["min"] <= limit <= bounds["max"]:
            errors.append(
                PolicyError(
                    where,
                    "size.out_of_range",
                    f"`{context}` limit {limit} is outside the allowed range {bounds['min']}..{bounds['max']} bytes",
                )
            )
        limits[context] = (limit, RuleRef(f"sizes/{context}", where))
    for context in CONTEXTS:
        if context not in limits:
            errors.append(
                PolicyError(
                    doc.locate(["limits"], key=True),
                    "size.context_missing",
                    f"no size limit for context `{context}`",
                )
            )
    return limits


def _rule_sources(
    documents: Sequence[Document],
    custom: Sequence[tuple[str, Location]],
    pii_cfg: Mapping[str, Any],
    pattern_on: bool,
    errors: list[PolicyError],
) -> list[_Source]:
    sources: list[_Source] = []
    seen: dict[str, Location] = {}
    pii_on = pii_cfg.get("enabled", True)
    wanted = pii_cfg.get("categories")
    categories: set[str] = set()
    for doc in documents:
        for list_key, pii in (("detectors", True), ("patterns", False)):
            for i, raw in enumerate(doc.spec.get(list_key, [])):
                where = doc.locate([list_key, i, "id"])
                if raw["id"] in seen:
                    errors.append(
                        PolicyError(
                            where,
                            "ref.duplicate_id",
                            f"content rule id `{raw['id']}` is already used at {seen[raw['id']]}",
                        )
                    )
                    continue
                seen[raw["id"]] = where
                if pii:
                    categories.add(raw["category"])
                sources.append(
                    _Source(
                        ref=RuleRef(f"content/{raw['id']}", where),
                        category=raw["category"],
                        pii=pii,
                        regex=raw["regex"],
                        regex_where=doc.locate([list_key, i, "regex"]),
                        ignore_case=bool(raw.get("ignoreCase", False)),
                        dot_all=bool(raw.get("dotAll", False)),
                        prefilter=bool(raw.get("prefilter", False)),
                        contexts=tuple(raw.get("contexts", CONTEXTS)),
                        validator=raw.get("validator"),
                    )
                )
    for n, (regex, where) in enumerate(custom, start=1):
        sources.append(
            _Source(
                RuleRef(f"content/custom-{n}", where),
                "custom",
                False,
                regex,
                where,
                False,
                False,
                False,
                CONTEXTS,
                None,
            )
        )
    if wanted is not None:
        for category in wanted:
            if category not in categories:
                errors.append(
                    PolicyError(
                        _where_category(documents, category),
                        "ref.unknown_category",
                        f"PII category `{category}` has no detector",
                    )
                )
    kept = []
    for source in sources:
        keep = pii_on and (wanted is None or source.category in wanted) if source.pii else pattern_on
        if keep:
            kept.append(source)
    return kept


def _where_category(documents: Sequence[Document], category: str) -> Location:
    for doc in documents:
        cats = doc.spec.get("piiDetection", {}).get("categories", [])
        if category in cats:
            return doc.locate(["piiDetection", "categories", cats.index(category)])
    return documents[0].where


def _flags(source: _Source) -> int:
    flags: int = hyperscan.HS_FLAG_SINGLEMATCH
    if source.ignore_case:
        flags |= hyperscan.HS_FLAG_CASELESS
    if source.dot_all:
        flags |= hyperscan.HS_FLAG_DOTALL
    if source.prefilter:
        flags |= hyperscan.HS_FLAG_PREFILTER
    return flags


def _span_finders(sources: Sequence[_Source], errors: list[PolicyError]) -> list[SpanFinder]:
    """Each source's span finder; a regex `re` or RE2 refuses is reported at its place."""
    finders: list[SpanFinder] = []
    for source in sources:
        try:
            # The gate reads every regex as `re` parses it; a prefilter rule's spans are found by `re`.
            parsed = re.compile(source.regex, _re_flags(source))
            finders.append(parsed if source.prefilter else _re2_finder(source))
        except (re.error, re2.error) as err:
            errors.append(PolicyError(source.regex_where, "pattern.invalid", f"regex does not compile: {err}"))
    return finders


def _compile(sources: Sequence[_Source], errors: list[PolicyError]) -> tuple[Any, int]:
    """Compile the database (unless a regex already failed); on failure, find and report
    each regex Hyperscan refuses."""
    if not sources or errors:
        return None, 0
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(
            expressions=[s.regex.encode() for s in sources],
            ids=list(range(len(sources))),
            elements=len(sources),
            flags=[_flags(s) for s in sources],
        )
    except hyperscan.error:
        for source in sources:
            single = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            try:
                single.compile(expressions=[source.regex.encode()], ids=[0], elements=1, flags=[_flags(source)])
            except hyperscan.error as err:
                hint = "" if source.prefilter else "; set `prefilter: true` if it needs look-arounds or back-references"
                errors.append(
                    PolicyError(
                        source.regex_where,
                        "pattern.invalid",
                        f"hyperscan cannot compile this regex: {err}{hint}",
                    )
                )
        return None, 0
    return database, database.size()


def _re_flags(source: _Source) -> int:
    flags = re.ASCII
    if source.ignore_case:
        flags |= re.IGNORECASE
    if source.dot_all:
        flags |= re.DOTALL
    return flags


def _compiled(source: _Source, finder: SpanFinder) -> ContentRule:
    return ContentRule(
        ref=source.ref,
        category=source.category,
        pii=source.pii,
        regex=finder,
        validator=VALIDATORS[source.validator] if source.validator else None,
    )


def _re2_finder(source: _Source) -> SpanFinder:
    r"""RE2 finds the spans: it runs in linear time, where Python's backtracking `re` takes
    minutes on 100 KB built to make `[A-Za-z0-9._%+-]+@` or `\{\{[^}]*__` try every
    start. Only a prefilter rule, which may hold look-arounds or back-references that RE2
    lacks, keeps `re`; keeping it linear is then its author's part.
    """
    options = re2.Options()
    options.log_errors = False  # a bad regex is reported as a policy error, not on stderr
    options.case_sensitive = not source.ignore_case
    options.dot_nl = source.dot_all
    return re2.compile(_in_re2_terms(source.regex), options)  # type: ignore[no-any-return]


_RE2_SPACE: Final = r"\t\n\v\f\r "


def _in_re2_terms(regex: str) -> str:
    r"""`regex` as RE2 reads it the way Hyperscan and `re` do: `\s` takes in the vertical
    tab, `$` also matches before a final newline, and `\Z` is RE2's `\z`."""
    out: list[str] = []
    index, opened = 0, -1  # `opened`: where the current character class began, or -1
    while index < len(regex):
        char = regex[index]
        if char == "\\" and index + 1 < len(regex):
            pair = regex[index : index + 2]
            if pair == r"\s":
                out.append(_RE2_SPACE if opened >= 0 else f"[{_RE2_SPACE}]")
            elif pair == r"\S" and opened < 0:
                out.append(f"[^{_RE2_SPACE}]")
            else:
                out.append(r"\z" if pair == r"\Z" else pair)
            index += 2
            continue
        if opened >= 0:
            # A `]` first in the class, or after its `^`, is a member, not the end.
            if char == "]" and index > opened + 1 and regex[opened + 1 : index] != "^":
                opened = -1
        elif char == "[":
            opened = index
        elif char == "$":
            char = r"(?:\n?\z)"
        out.append(char)
        index += 1
    return "".join(out)


# -- the gate: strings every match must contain ------------------------------------------
#
# The analysis is the one behind trigram indexes (Russ Cox, "Regular Expression Matching
# with a Trigram Index"), on the tree Python's own parser makes of the regex, so it sees the
# regex exactly as `re` does. For each fragment it keeps: the exact strings it matches
# when they are few, and otherwise sets its matches start with, end with, and contain.
# Every set is sound on its own: dropping a condition (a look-around, `\b`, a repeat
# beyond its minimum) only weakens it. b"" in a set means "nothing known".

_Strings = frozenset[bytes]
_NOTHING: Final[_Strings] = frozenset({b""})
_MAX_STRINGS: Final = 64
"""Cross products of string sets stop here; the fragment then falls back to a part."""
_MAX_CLASS: Final = 10
"""A character class wider than the digits tells too little to be spelled out."""
_RARE_ENOUGH: Final = 1e-5
"""Past one in 100,000 bytes a rarer string no longer pays for making the gate wider."""


class _Factors(NamedTuple):
    """Strings the matches of a fragment are known to consist of, start with, end with, contain.

    A named tuple rather than a frozen dataclass: thousands are made per build, and a frozen
    dataclass is several times slower to construct.
    """

    exact: _Strings | None
    prefix: _Strings
    suffix: _Strings
    inner: _Strings


_UNKNOWN: Final = _Factors(None, _NOTHING, _NOTHING, _NOTHING)


def _exactly(strings: _Strings) -> _Factors:
    return _Factors(strings, strings, strings, strings)


def _byte_rarity(byte: int) -> float:
    """How often a byte turns up in prose, roughly: letters and spaces all the time."""
    char = chr(byte)
    if char.isalpha() or char.isspace():
        return 1 / 5
    if char.isdigit() or char in ".,;:-'\"()/!?":
        return 1 / 100
    return 1 / 2000


_RARITY: Final = tuple(_byte_rarity(b) for b in range(256))


@functools.lru_cache(maxsize=4096)
def _cost(strings: _Strings) -> tuple[float, int]:
    """Expected gate hits per byte for a set (lower is better), then longer strings first.

    Cached: the same sets are weighed again at every step of a concatenation.
    """
    total = 0.0
    for string in strings:
        rarity = 1.0
        for byte in string:
            rarity *= _RARITY[byte]
        total += max(rarity, _RARE_ENOUGH)
    return total, -sum(map(len, strings))


def _cheapest(*sets: _Strings) -> _Strings:
    useful = [s for s in sets if b"" not in s]
    return min(useful, key=_cost) if useful else _NOTHING


def _cross(left: _Strings, right: _Strings) -> _Strings | None:
    if len(left) * len(right) > _MAX_STRINGS:
        return None
    return frozenset(a + b for a in left for b in right)


def _concat(left: _Factors, right: _Factors) -> _Factors:
    if left.exact is not None and right.exact is not None:
        both = _cross(left.exact, right.exact)
        if both is not None:
            return _exactly(both)
    prefix = left.prefix if left.exact is None else _cross(left.exact, right.prefix) or left.exact
    suffix = right.suffix if right.exact is None else _cross(left.suffix, right.exact) or right.exact
    seam = _cross(left.suffix, right.prefix) or _NOTHING
    return _Factors(None, prefix, suffix, _cheapest(left.inner, right.inner, prefix, suffix, seam))


def _sequence(items: Iterable[tuple[Any, Any]], caseless: bool) -> _Factors:
    result = _exactly(_NOTHING)
    run = bytearray()  # consecutive ASCII literals, joined before they meet the rest
    for op, arg in items:
        if op is _sre.LITERAL and arg < 128:
            run.append(ord(chr(arg).lower()) if caseless else arg)
            continue
        if run:
            result = _concat(result, _exactly(frozenset({bytes(run)})))
            run.clear()
        result = _concat(result, _node(op, arg, caseless))
    return _concat(result, _exactly(frozenset({bytes(run)}))) if run else result


def _node(op: Any, arg: Any, caseless: bool) -> _Factors:
    if op is _sre.LITERAL:
        return _characters(frozenset({arg}), caseless)
    if op is _sre.IN:
        return _class(arg, caseless)
    if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
        return _exactly(_NOTHING)  # zero width: ignoring the condition only weakens
    if op is _sre.SUBPATTERN:
        _group, add_flags, del_flags, items = arg
        return _UNKNOWN if add_flags or del_flags else _sequence(items, caseless)
    if op is _sre.BRANCH:
        return _branch([_sequence(items, caseless) for items in arg[1]])
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
        low, high, items = arg
        return _repeat(low, high, _sequence(items, caseless))
    return _UNKNOWN  # any character, back-references, conditionals, atomic groups


@functools.lru_cache(maxsize=1024)
def _characters(codes: frozenset[int], caseless: bool) -> _Factors:
    """One position matching any of `codes`; cached, as most positions are the same few letters."""
    if caseless:  # the gate database folds case for such rules, as `re.IGNORECASE | re.ASCII`
        codes = frozenset(ord(chr(c).lower()) if c < 128 else c for c in codes)
    if len(codes) > _MAX_CLASS or any(c > 127 for c in codes):
        return _UNKNOWN
    return _exactly(frozenset(bytes([c]) for c in codes))


_CATEGORIES: Final = {_sre.CATEGORY_DIGIT: "0123456789", _sre.CATEGORY_SPACE: " \t\n\r\f\v"}
"""The ASCII classes worth spelling out; `\\w` is too wide and the negated ones unbounded."""


def _class(members: Iterable[tuple[Any, Any]], caseless: bool) -> _Factors:
    codes: set[int] = set()
    for op, arg in members:
        if op is _sre.LITERAL:
            codes.add(arg)
        elif op is _sre.RANGE:
            codes.update(range(arg[0], arg[1] + 1))
        elif op is _sre.CATEGORY and arg in _CATEGORIES:
            codes.update(map(ord, _CATEGORIES[arg]))
        else:
            return _UNKNOWN  # negated, or a category too wide to list
    return _characters(frozenset(codes), caseless)


def _branch(options: Sequence[_Factors]) -> _Factors:
    exacts = [o.exact for o in options if o.exact is not None]
    if len(exacts) == len(options):
        union = frozenset().union(*exacts)
        if len(union) <= _MAX_STRINGS:
            return _exactly(union)
    prefix = frozenset().union(*(o.prefix for o in options))
    suffix = frozenset().union(*(o.suffix for o in options))
    inner = frozenset().union(*(o.inner for o in options))
    return _Factors(None, prefix, suffix, _NOTHING if b"" in inner else inner)


def _repeat(low: int, high: int, body: _Factors) -> _Factors:
    if low == high == 1:
        return body
    if body.exact is not None:
        if low == 0 and high == 1:
            return _exactly(body.exact | _NOTHING)
        if low == high:
            power: _Strings | None = _NOTHING
            for _ in range(low):
                power = _cross(power, body.exact) if power is not None else None
            if power is not None:
                return _exactly(power)
    if low == 0:
        return _UNKNOWN
    prefix = body.prefix if body.exact is None else body.exact
    suffix = body.suffix if body.exact is None else body.exact
    return _Factors(None, prefix, suffix, _cheapest(body.inner, prefix, suffix))


def _gate_strings(source: _Source) -> tuple[_Strings, bool]:
    """Strings of which every match of the rule's regex contains one (b"" if none is known),
    and whether they are to be found regardless of case."""
    parsed = _sre_parse.parse(source.regex, _re_flags(source))
    caseless = bool(parsed.state.flags & re.IGNORECASE)
    found = _sequence(parsed, caseless)
    strings = _cheapest(found.inner, found.prefix, found.suffix, found.exact or _NOTHING)
    # A string holding another of the set is found whenever that one is.
    return frozenset(s for s in strings if not any(t != s and t in s for t in strings)), caseless


def _compile_gate(sources: Sequence[_Source]) -> Any:
    """The literal pre-pass over every rule's gate strings; None if a rule has none."""
    expressions: list[bytes] = []
    flags: list[int] = []
    for source in sources:
        strings, caseless = _gate_strings(source)
        if b"" in strings:
            return None
        expressions.extend(sorted(strings))
        flag = hyperscan.HS_FLAG_SINGLEMATCH | (hyperscan.HS_FLAG_CASELESS if caseless else 0)
        flags.extend([flag] * len(strings))
    if not expressions:
        return None
    gate = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    gate.compile(
        expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags, literal=True
    )
    return gate
