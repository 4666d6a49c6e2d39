"""The files every job writes beside its results, and how: manifest.json (what was made) and
progress.json (how far it got), each replaced atomically (temp file + rename) so that readers
never see half a file. Below the pipeline and the container contract, which both use them."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        json.dump(data, tmp, indent=2, sort_keys=True)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The last complete progress report, or None if there is none yet."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
