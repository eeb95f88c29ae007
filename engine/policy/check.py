"""Check documents against the JSON Schema of their kind.

Every schema error is reported at the place it concerns, with a stable code made from the
schema keyword (`schema.required`, `schema.enum`, ...), so CI output points straight at the
line to fix. The schemas themselves are read by the shell and passed in. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend

from engine.errors import Location, PolicyError
from engine.policy.load import Document, JSONValue

__all__ = ["check_documents", "make_validators"]

Validators = Mapping[str, Draft202012Validator]


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    r"""`pattern` as JSON Schema means it, where `$` is the end of the text.

    The schemas are ECMA-262 regexes, but jsonschema runs them with Python's `re`, whose
    `$` also matches before a final newline: `tools.read\n` passed `^[a-z_.]+$`. A
    final `$` is read as `\Z`; the schemas use `$` nowhere else.
    """
    if not validator.is_type(instance, "string"):
        return
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
    if re.search(anchored, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]  # untyped in the stubs


def make_validators(schemas: Mapping[str, JSONValue]) -> dict[str, Draft202012Validator]:
    """Build one validator per kind; do it once per process, not per document."""
    return {kind: _Validator(schema) for kind, schema in schemas.items()}


def check_documents(
    documents: Iterable[Document],
    validators: Validators,
    overridden: Mapping[tuple[str, str, str], Location] | None = None,
) -> list[PolicyError]:
    """Every schema error in `documents`.

    `overridden` maps (kind, name, top-level spec key) to the environment variable that
    set it, so an invalid override is reported against the variable, not the YAML line.
    """
    errors: list[PolicyError] = []
    for document in documents:
        validator = validators.get(document.kind)
        if validator is None:
            errors.append(PolicyError(document.where, "document.no_schema", f"no schema for kind `{document.kind}`"))
            continue
        for error in validator.iter_errors(document.spec):
            errors.append(_convert(document, error, overridden or {}))
    return errors


def _convert(
    document: Document, error: ValidationError, overridden: Mapping[tuple[str, str, str], Location]
) -> PolicyError:
    path = list(error.absolute_path)
    keyword = str(error.validator)
    where = document.locate(path)
    message = _message(error, path)
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        extra = _extra_keys(error)
        if extra:
            where = document.locate([*path, extra[0]], key=True)
    if path and isinstance(path[0], str) and (document.kind, document.name, path[0]) in overridden:
        where = overridden[(document.kind, document.name, path[0])]
    return PolicyError(where, f"schema.{keyword}", message)


def _message(error: ValidationError, path: Sequence[Any]) -> str:
    keyword = error.validator
    at = _dotted(path)
    subject = f"`{at}`" if at else "spec"
    value: Any = error.instance
    expected: Any = error.validator_value
    if keyword == "required":
        missing = [name for name in expected if name not in (value or {})]
        return f"{subject} is missing required field `{missing[0] if missing else '?'}`"
    if keyword == "additionalProperties":
        extra = _extra_keys(error)
        return f"{subject} has unknown field `{extra[0]}`" if extra else f"{subject} has unknown fields"
    if keyword == "enum":
        choices = ", ".join(f"`{c}`" for c in expected)
        return f"{subject} must be one of {choices}, got `{_short(value)}`"
    if keyword == "type":
        return f"{subject} must be of type `{expected}`, got `{_short(value)}`"
    if keyword == "pattern":
        return f"{subject} does not match `{expected}`: got `{_short(value)}`"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{subject} is out of range: {error.message}"
    if keyword == "uniqueItems":
        return f"{subject} has duplicate items"
    return f"{subject}: {' '.join(error.message.split())}"


def _extra_keys(error: ValidationError) -> list[str]:
    schema: Any = error.schema
    instance: Any = error.instance
    allowed = set(schema.get("properties", {})) if isinstance(schema, dict) else set()
    patterns = schema.get("patternProperties", {}) if isinstance(schema, dict) else {}
    if patterns:
        return []
    return sorted(str(k) for k in instance if k not in allowed)


def _dotted(path: Sequence[Any]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
