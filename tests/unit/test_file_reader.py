"""The read-only SQLite connection the MCP look-ups use instead of the ORM's thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.store.reading import file_reader


def _store(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE tools (id TEXT PRIMARY KEY, name TEXT UNIQUE)")
    return db


def test_only_a_sqlite_file_gets_a_reader(tmp_path: Path) -> None:
    assert file_reader("postgres://gw@localhost/gw") is None
    assert file_reader("sqlite://:memory:") is None
    _store(tmp_path / "gw.db").close()
    reader = file_reader(f"sqlite://{tmp_path / 'gw.db'}?journal_mode=WAL")
    assert reader is not None
    reader.close()


def test_reads_see_every_committed_write(tmp_path: Path) -> None:
    writer = _store(tmp_path / "gw.db")
    reader = file_reader(f"sqlite://{tmp_path / 'gw.db'}")
    assert reader is not None
    query = "SELECT id, name FROM tools WHERE name = ?"
    assert reader.fetch(query, ["echo"]) == []
    writer.execute("INSERT INTO tools VALUES ('t1', 'echo')")
    assert reader.fetch(query, ["echo"]) == [{"id": "t1", "name": "echo"}]
    writer.execute("UPDATE tools SET name = 'renamed'")
    assert reader.fetch(query, ["echo"]) == []
    reader.close()
    writer.close()


def test_the_reader_cannot_write(tmp_path: Path) -> None:
    writer = _store(tmp_path / "gw.db")
    reader = file_reader(f"sqlite://{tmp_path / 'gw.db'}")
    assert reader is not None
    assert reader.fetch("INSERT INTO tools VALUES ('t2', 'x')", []) is None
    assert writer.execute("SELECT COUNT(*) FROM tools").fetchone() == (0,)
    reader.close()
    writer.close()
