"""Single-row catalog look-ups read straight from the SQLite file, on the calling thread.

The ORM's SQLite driver runs every query on its own thread, and the hand-over there and
back costs about 140 us, twenty times the look-up itself (an indexed read of one row,
about 7 us). A tool call pays for one such look-up, so the MCP paths read through a
second, read-only connection instead. Reads stay exact: the file is in WAL mode, where
a reader sees the last committed write and never waits for a writer. Listings keep the
ORM's thread, since a large catalog would hold the event loop for the whole read.

A reader also keeps its answers, shaped, until the file changes, so that a repeated call
skips the query and the decoding of its JSON columns. Kept answers never go stale: SQLite
counts the commits of every other connection, in any process (`PRAGMA data_version`),
and the first write anywhere drops them all.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["FileReader", "Row", "file_reader", "sqlite_file"]

Row = dict[str, Any]

_KEPT: Final = 512
"""Look-ups kept at most; past that the oldest goes (distinct names and callers' teams)."""


class FileReader:
    def __init__(self, path: Path) -> None:
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        # A short timeout: a reader waits only while SQLite recovers the WAL, and the
        # caller then falls back to the ORM rather than hold the event loop.
        self._db = sqlite3.connect(uri, uri=True, timeout=0.05, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._kept: dict[tuple[str, tuple[Any, ...], Callable[[Row], Row]], list[Row]] = {}
        self._version: int | None = None

    def fetch(self, sql: str, values: Sequence[Any], shape: Callable[[Row], Row] = dict) -> list[Row] | None:
        """The rows of `sql`, each made by `shape`, or None when the file cannot be read
        right now. Each caller gets rows of its own (nested values are shared: read only)."""
        key = (sql, tuple(values), shape)
        try:
            # Read before the query, so kept rows are never older than the version they carry.
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._kept.clear()
                self._version = version
            rows = self._kept.get(key)
            if rows is None:
                rows = [shape(dict(row)) for row in self._db.execute(sql, key[1])]
                if len(self._kept) >= _KEPT:
                    del self._kept[next(iter(self._kept))]
                self._kept[key] = rows
        except sqlite3.OperationalError:
            return None
        return [dict(row) for row in rows]

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
