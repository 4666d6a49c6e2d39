"""Request defaults that depend on the models being served.

The tiny random-weight twins (`worldgen models make-tiny`) produce noise whatever the size, and
full-size defaults make a 2-core CPU spend minutes and hundreds of MB on it. `make-tiny` leaves a
marker file; where it is found, requests that do not choose a size get a small, quick one.
Kept free of heavy imports: the API and the CLI read it at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worldgen.limits import DEFAULT_HEIGHT

if TYPE_CHECKING:
    from worldgen.request import WorldRequest

TINY_MARKER = "worldgen-tiny-models.json"
FULL_DEFAULTS: dict[str, Any] = {"height": DEFAULT_HEIGHT, "steps": 50}
TINY_DEFAULTS: dict[str, Any] = {"height": 128, "steps": 4}


def models_are_tiny(models_dir: Path | None) -> bool:
    """True where `make-tiny` wrote this models root (its marker file is there)."""
    return models_dir is not None and (Path(models_dir) / TINY_MARKER).is_file()


def write_tiny_marker(models_dir: Path, seed: int) -> Path:
    path = Path(models_dir) / TINY_MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    note = "random-weight test twins written by `worldgen models make-tiny`: their output is noise"
    path.write_text(json.dumps({"tiny": True, "seed": seed, "note": note}, indent=2) + "\n")
    return path


def request_defaults(tiny: bool) -> dict[str, Any]:
    """The size and step count a request gets when it does not choose them."""
    return dict(TINY_DEFAULTS if tiny else FULL_DEFAULTS)


def with_defaults(request: WorldRequest, tiny: bool) -> WorldRequest:
    """`request` with the model-dependent defaults filled in where the client left them out."""
    unset = {k: v for k, v in request_defaults(tiny).items() if k not in request.model_fields_set}
    return request.model_copy(update=unset) if unset else request
