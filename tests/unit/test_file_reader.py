"""The read-only SQLite connection the MCP look-ups use instead of the ORM's thread."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
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


def test_kept_answers_last_only_until_the_next_write(tmp_path: Path) -> None:
    writer = _store(tmp_path / "gw.db")
    writer.execute("INSERT INTO tools VALUES ('t1', 'echo')")
    reader = file_reader(f"sqlite://{tmp_path / 'gw.db'}")
    assert reader is not None
    shaped: list[str] = []

    def shape(row: dict[str, object]) -> dict[str, object]:
        shaped.append(str(row["id"]))
        return {**row, "shaped": True}

    query = "SELECT id, name FROM tools WHERE name = ?"
    first = reader.fetch(query, ["echo"], shape)
    assert first == [{"id": "t1", "name": "echo", "shaped": True}]
    first[0]["name"] = "changed by its caller"
    assert reader.fetch(query, ["echo"], shape) == [{"id": "t1", "name": "echo", "shaped": True}]
    assert shaped == ["t1"]  # the second answer was kept, and each caller got rows of its own
    writer.execute("UPDATE tools SET id = 't2'")
    assert reader.fetch(query, ["echo"], shape) == [{"id": "t2", "name": "echo", "shaped": True}]
    writer.execute("INSERT INTO tools VALUES ('t3', 'other')")  # any write drops what was kept
    assert reader.fetch(query, ["echo"], shape) == [{"id": "t2", "name": "echo", "shaped": True}]
    assert shaped == ["t1", "t2", "t2"]
    reader.close()
    writer.close()


def test_a_write_from_another_process_drops_kept_answers(tmp_path: Path) -> None:
    _store(tmp_path / "gw.db").close()
    reader = file_reader(f"sqlite://{tmp_path / 'gw.db'}")
    assert reader is not None
    query = "SELECT id FROM tools WHERE name = ?"
    assert reader.fetch(query, ["echo"]) == []
    script = (
        "import sqlite3, sys; "
        "sqlite3.connect(sys.argv[1], isolation_level=None).execute(\"INSERT INTO tools VALUES ('t1', 'echo')\")"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "gw.db")], check=True)
    assert reader.fetch(query, ["echo"]) == [{"id": "t1"}]
    reader.close()
