"""Run the command line interface as `python -m engine`."""

from __future__ import annotations

from engine.cli import main

raise SystemExit(main())
