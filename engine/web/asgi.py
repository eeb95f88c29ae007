"""Entry point for Hypercorn's worker processes, which build their own app.

Each worker reads the same environment the parent validated, so every worker runs the
same policy version and settings.
"""

from __future__ import annotations

import os

from quart import Quart

from engine.settings import load_settings
from engine.web.app import create_app

__all__ = ["from_environment"]


def from_environment() -> Quart:
    return create_app(load_settings(os.environ))
