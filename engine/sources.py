"""Read policy files from disk into `(label, text)` sources for the pure core.

Labels are the paths as the user gave them, so every error message points at a path the
user can open. This is the only place the CLI and the reloader read policy files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.errors import Location, PolicyError, PolicyErrors
from engine.policy import Source
from engine.policy.load import only_tests

__all__ = ["MissingPath", "read_layer"]

_SUFFIXES = (".yaml", ".yml")


class MissingPath(Exception):
    """A path named on the command line does not exist: a usage error, not a policy error."""


def read_layer(paths: Iterable[str | Path], *, without_tests: bool = False) -> list[Source]:
    """Read every YAML file under `paths` (files, or folders searched recursively), sorted.

    `without_tests` leaves out files holding only `PolicyTest` documents, which the
    gateway never uses; parsing them would only slow its start and reloads.

    Raises:
        MissingPath: a path does not exist.
        PolicyErrors: a file is not UTF-8 text.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and _visible(p, path)))
        elif path.is_file():
            files.append(path)
        else:
            raise MissingPath(f"no such file or folder: {raw}")
    sources, errors = [], []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
            if without_tests and only_tests(text):
                continue
            sources.append(Source(str(file), text))
        except UnicodeDecodeError as err:
            errors.append(PolicyError(Location(str(file)), "file.encoding", f"file is not UTF-8 text: {err.reason}"))
        except OSError as err:  # removed or replaced between listing and reading
            errors.append(PolicyError(Location(str(file)), "file.unreadable", f"file cannot be read: {err.strerror}"))
    if errors:
        raise PolicyErrors(errors)
    return sources


def _visible(file: Path, folder: Path) -> bool:
    """A policy file, not one under a hidden folder: a Kubernetes ConfigMap mount keeps a
    second copy of every file under `..data` and `..<timestamp>`, which would define
    every document twice."""
    return file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts)
