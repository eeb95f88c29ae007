"""Read the JSON Schemas of the policy kinds from the `schemas/` folder, once.

The schemas live beside the package, not inside it, so that security teams and their
editors find them at a stable path; this module is the one place that reads them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from engine.policy import KINDS, make_validators

__all__ = ["SCHEMA_DIR", "context_validator", "schema_file", "validators"]

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"


def schema_file(kind: str) -> Path:
    """`TeamVisibility` -> `schemas/team_visibility.schema.json`."""
    return SCHEMA_DIR / (re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower() + ".schema.json")


@functools.cache
def validators() -> Mapping[str, Any]:
    """One validator per kind, built from the schema files on first use."""
    return make_validators({kind: json.loads(schema_file(kind).read_text()) for kind in KINDS})


@functools.cache
def context_validator() -> Any:
    """The rules a policy test case's `context` meets, for contexts that come from
    elsewhere (`policygate explain`): the same shape, held to the same schema."""
    cases = json.loads(schema_file("PolicyTest").read_text())["properties"]["cases"]
    return make_validators({"context": cases["items"]["properties"]["context"]})["context"]
