"""Cerberus, with a `regex` rule that holds for the whole value.

Cerberus appends `$` to a pattern and calls `re.match`, and `$` also matches just before
a final newline: `^[A-Za-z0-9_.-]{1,128}$` let `name\n` through. Names, emails, URLs,
prefixes and the header values the gateway sends upstream were all checked that way.
Every schema in the gateway (request bodies, settings, policy overrides) goes through
this validator, so a pattern means what it says without each one spelling `\\Z`.
"""

from __future__ import annotations

import re
from typing import Any

import cerberus
from cerberus import errors

__all__ = ["Validator"]


class Validator(cerberus.Validator):  # type: ignore[misc]  # cerberus ships no types
    def _validate_regex(self, pattern: str, field: str, value: Any) -> None:
        # Cerberus reads the rule's own schema from this docstring; it must stay as is.
        """{'type': 'string'}"""
        if isinstance(value, str) and re.fullmatch(pattern, value) is None:
            self._error(field, errors.REGEX_MISMATCH)
