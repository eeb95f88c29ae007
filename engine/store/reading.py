"""Single-row catalog look-ups read straight from the SQLite file, on the calling thread.

The ORM's SQLite driver runs every query on its own thread, and the hand-over there and
back costs about 140 us, twenty times the look-up itself (an indexed read of one row,
about 7 us). A tool call pays for one such look-up, so the MCP paths read through a
second, read-only connection instead. Reads stay exact: the file is in WAL mode, where
a reader sees the last committed write and never waits for a writer, and there is no
cache to go stale. Listings keep the ORM's thread, since a large catalog would hold the
event loop for the whole read.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FileReader", "file_reader", "sqlite_file"]


class FileReader:
    def __init__(self, path: Path) -> None:
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        # A short timeout: a reader waits only while SQLite recovers the WAL, and the
        # caller then falls back to the ORM rather than hold the event loop.
        self._db = sqlite3.connect(uri, uri=True, timeout=0.05, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row

    def fetch(self, sql: str, values: Sequence[Any]) -> list[dict[str, Any]] | None:
        """The rows of `sql`, or None when the file cannot be read right now."""
        try:
            return [dict(row) for row in self._db.execute(sql, tuple(values))]
        except sqlite3.OperationalError:
            return None

    def close(self) -> None:
        self._db.close()


def sqlite_file(store_url: str) -> Path | None:
    """The file of a SQLite store URL; None for an in-memory store or another database."""
    if not store_url.startswith("sqlite://"):
        return None
    path = store_url.removeprefix("sqlite://").split("?", 1)[0]
    if not path or path.startswith(":memory:") or "mode=memory" in store_url:
        return None
    return Path(path)


def file_reader(store_url: str) -> FileReader | None:
    """A reader for a SQLite store kept in a file; None for anything else."""
    path = sqlite_file(store_url)
    return FileReader(path) if path is not None else None
