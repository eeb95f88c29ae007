"""`policygate`: lint, test, explain, scan, compile, print and benchmark policies.

Exit codes: 0 when all is well, 1 for policy errors, failing cases or blocked content,
2 for usage errors (including paths that do not exist). Whatever happens, the user gets
messages, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from jsonschema.exceptions import best_match

from engine import __version__
from engine.cases import context_from_data, iter_cases, run_case
from engine.decide import Content, decide
from engine.decide.content import CONTEXTS, inspect_content
from engine.errors import PolicyErrors
from engine.policy import Build, Source, compile_policy
from engine.report import effective_yaml, format_errors
from engine.schemas import context_validator, validators
from engine.sources import MissingPath, read_layer

__all__ = ["main"]

OK, FAILED, USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except MissingPath as err:
        print(f"policygate: {err}", file=sys.stderr)
        return USAGE
    except PolicyErrors as err:
        print(format_errors(err.errors, "text"), file=sys.stderr)
        return FAILED
    except BrokenPipeError:
        return OK
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policygate", description="PolicyGate policy tools")
    parser.add_argument("--version", action="version", version=f"policygate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lint = commands.add_parser("lint", help="check policy documents against their schemas and each other")
    _layer_args(lint)
    lint.add_argument("--format", choices=["text", "json", "github", "sarif"], default="text")
    lint.set_defaults(run=_lint)

    test = commands.add_parser("test", help="run the PolicyTest cases of a policy set")
    _layer_args(test)
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(run=_test)

    explain = commands.add_parser("explain", help="decide one request context given as JSON")
    explain.add_argument("context", help="a JSON file with the request context, or - for stdin")
    _policy_args(explain)
    explain.set_defaults(run=_explain)

    scan = commands.add_parser("scan", help="inspect text as the gateway would")
    scan.add_argument("file", nargs="?", default="-", help="text to scan, or - for stdin")
    scan.add_argument("--context", choices=CONTEXTS, default="resource")
    scan.add_argument("--jsonl", action="store_true", help='read {"id","text","context"} lines on stdin')
    _policy_args(scan)
    scan.set_defaults(run=_scan)

    summary = commands.add_parser("compile", help="build the snapshot and print a summary")
    _policy_args(summary)
    summary.set_defaults(run=_compile)

    effective = commands.add_parser("effective", help="print the policy with environment overrides applied")
    _policy_args(effective)
    effective.set_defaults(run=_effective)

    bench = commands.add_parser("bench", help="measure decision latency and scan throughput")
    bench.add_argument("--json", action="store_true")
    _policy_args(bench)
    bench.set_defaults(run=_bench)

    from engine.server_cli import add_commands

    add_commands(commands)
    return parser


def _layer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="policy files or folders (default: policies)")
    parser.add_argument("--base", action="append", default=[], help="a policy set the paths are laid over (repeatable)")


def _policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--policies",
        action="append",
        help="policy files or folders; repeat to lay one set over another (default: policies)",
    )


def _layers(args: argparse.Namespace) -> list[list[Source]]:
    if hasattr(args, "paths"):
        return [*(read_layer([b]) for b in args.base), read_layer(args.paths or ["policies"])]
    return [read_layer([p]) for p in (args.policies or ["policies"])]


def _build(args: argparse.Namespace, clock: Callable[[], float] | None = None) -> Build:
    return compile_policy(_layers(args), validators=validators(), env=os.environ, now=time.time(), clock=clock)


def _lint(args: argparse.Namespace) -> int:
    try:
        build = _build(args)
    except PolicyErrors as err:
        print(format_errors(err.errors, args.format), file=sys.stdout if args.format != "text" else sys.stderr)
        return FAILED
    warnings = build.snapshot.warnings
    if args.format == "text":
        if warnings:
            print(format_errors(warnings, "text"), file=sys.stderr)
        print(f"ok: {len(build.documents)} documents, {len(build.tests)} test documents")
    else:
        print(format_errors(warnings, args.format))
    return OK


def _test(args: argparse.Namespace) -> int:
    build = _build(args)
    failed = total = 0
    for case in iter_cases(build.tests):
        result = run_case(build.snapshot, case)
        total += 1
        if result.passed:
            if args.verbose:
                print(f"PASS {case.where}: {case.note}")
            continue
        failed += 1
        print(f"FAIL {case.where}: {case.note}")
        for problem in result.problems:
            print(f"    {problem}")
        if result.decision is not None and result.decision.message:
            print(f"    message: {result.decision.message}")
    print(f"{total - failed} passed, {failed} failed")
    return FAILED if failed or not total else OK


def _explain(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.context == "-" else _read_text(args.context)
    try:
        data = json.loads(text)
        problem = best_match(context_validator().iter_errors(data))
        if problem is not None:
            raise ValueError(f"`{problem.json_path}`: {problem.message}")
        ctx = context_from_data(data)
    except (json.JSONDecodeError, ValueError) as err:
        print(f"policygate: invalid context: {err}", file=sys.stderr)
        return USAGE
    decision = decide(_build(args).snapshot, ctx)
    out: dict[str, Any] = {
        "allow": decision.allow,
        "status": decision.status,
        "reason": str(decision.reason),
        "rule": decision.rule.id,
        "where": str(decision.rule.where),
        "message": decision.message,
        "route": decision.route,
    }
    if decision.visibility is not None and decision.visibility_rule is not None:
        out["visibility"] = {
            "access": str(decision.visibility.access),
            "teams": sorted(decision.visibility.teams),
            "rule": decision.visibility_rule.id,
            "where": str(decision.visibility_rule.where),
        }
    if decision.findings:
        out["findings"] = [_finding(f) for f in decision.findings]
    if decision.retry_after is not None:
        out["retryAfter"] = decision.retry_after
    print(json.dumps(out, indent=2))
    return OK if decision.allow else FAILED


def _scan(args: argparse.Namespace) -> int:
    snapshot = _build(args).snapshot
    if args.jsonl:
        return _scan_lines(snapshot, args.context, sys.stdin, sys.stdout)
    text = sys.stdin.read() if args.file == "-" else _read_text(args.file)
    inspection = inspect_content(snapshot.content, Content(args.context, text))
    for finding in inspection.findings:
        print(f"{finding.start}-{finding.end}: {finding.rule} ({finding.category}): {finding.action}")
    if inspection.denial is not None:
        print(f"blocked: {inspection.denial[2]}")
        return FAILED
    print("passed" if not inspection.findings else f"passed with {len(inspection.findings)} finding(s)")
    return OK


def _scan_lines(snapshot: Any, default_context: str, lines: TextIO, out: TextIO) -> int:
    blocked_any = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            context = item.get("context", default_context)
            if context not in CONTEXTS or not isinstance(item.get("text"), str):
                raise ValueError("needs a string `text` and a known `context`")
        except (json.JSONDecodeError, ValueError, AttributeError) as err:
            out.write(json.dumps({"line": number, "error": str(err)}) + "\n")
            continue
        inspection = inspect_content(snapshot.content, Content(context, item["text"]))
        blocked = inspection.denial is not None
        blocked_any |= blocked
        record = {
            "id": item.get("id"),
            "blocked": blocked,
            "findings": [_finding(f) for f in inspection.findings],
        }
        if blocked and inspection.denial is not None and not inspection.findings:
            record["reason"] = str(inspection.denial[0])
        out.write(json.dumps(record) + "\n")
    return FAILED if blocked_any else OK


def _compile(args: argparse.Namespace) -> int:
    build = _build(args, clock=time.perf_counter)
    snapshot = build.snapshot
    content = snapshot.content
    scanner = next(iter(content.scanners.values()))
    print(f"version:   {snapshot.version}")
    print(f"documents: {len(build.documents)} policy, {len(build.tests)} test")
    print(f"routes:    {sum(1 for ref in snapshot.origin if ref.startswith('routes/'))} rules")
    print(f"content:   {content.rule_count} rules, hyperscan database {scanner.database_bytes} bytes")
    for context, ctx_scanner in content.scanners.items():
        active = sum(1 for a in ctx_scanner.actions if a != "allow")
        print(f"  {context:<12} {active} rules, limit {ctx_scanner.max_bytes} bytes")
    print(f"overrides: {', '.join(a.env for a in build.applied) or 'none'}")
    print("passes:")
    for name, seconds in build.timings:
        print(f"  {name:<18} {seconds * 1000:8.2f} ms")
    print(f"  {'total':<18} {sum(s for _, s in build.timings) * 1000:8.2f} ms")
    for warning in snapshot.warnings:
        print(warning, file=sys.stderr)
    return OK


def _effective(args: argparse.Namespace) -> int:
    build = _build(args)
    sys.stdout.write(effective_yaml(build))
    return OK


def _bench(args: argparse.Namespace) -> int:
    from engine.bench import run_bench

    # The gateway builds the policy without its test documents; so does the benchmark.
    layers = [read_layer([p], without_tests=True) for p in (args.policies or ["policies"])]
    figures = run_bench(layers, validators())
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:<28} {value}")
    return OK


def _finding(finding: Any) -> dict[str, Any]:
    return {"rule": finding.rule, "category": finding.category, "start": finding.start, "end": finding.end}


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise MissingPath(f"no such file: {path}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise MissingPath(f"cannot read {path} as UTF-8 text: {err}") from err
