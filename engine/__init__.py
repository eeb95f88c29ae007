"""PolicyGate: a secure MCP gateway in which every security rule is data.

Importing the package has no side effects; the public API lives in `engine.policy`
(policy text to snapshot) and `engine.decide` (snapshot and request to decision).
"""

from __future__ import annotations

__version__ = "0.1.0"
