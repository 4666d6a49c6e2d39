"""GET /v1/info: what this server makes and accepts — its models (the tiny test twins make noise),
the defaults a request gets for what it leaves out, the limits, and whether keys are needed. The
web page shows a banner for tiny models and fills its form from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from worldgen import __version__
from worldgen.api.state import AppState, app_state
from worldgen.defaults import TINY_MARKER, models_are_tiny, with_defaults
from worldgen.limits import MAX_HEIGHT, MAX_LABEL_CHARS, MAX_LABELS, MAX_PROMPT_CHARS, MAX_STEPS, MIN_HEIGHT
from worldgen.request import MAX_OBJECTS, WorldRequest

router = APIRouter(prefix="/v1/info", tags=["info"])

HEIGHT_MULTIPLE = 16


class _Described(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)  # the docstrings below are the descriptions


class ModelsInfo(_Described):
    tiny: bool
    """The random-weight test twins (`worldgen models make-tiny`): worlds come out as noise."""
    note: str | None
    """What the models are, for people (the tiny twins' note), or None."""


class DefaultsInfo(_Described):
    """What a request gets for each field it leaves out (height and steps depend on the models)."""

    height: int
    width: int
    steps: int
    guidance: float
    formats: list[str]
    scene: str
    precision: str
    step_cache: str
    vae_mode: str
    depth_compression: bool
    layered: bool
    inpaint_seed: int
    stage: Literal["panorama", "world"]


class LimitsInfo(_Described):
    min_height: int
    max_height: int
    height_multiple: int
    max_steps: int
    max_prompt_chars: int
    max_labels: int
    """Per layer (labels_fg1, labels_fg2)."""
    max_label_chars: int
    max_objects: int
    """Boxes per layer (objects_fg1, objects_fg2)."""
    max_json_bytes: int
    """The largest request body other than an upload."""
    upload_max_bytes: int
    """The largest PNG/JPEG upload."""
    upload_max_npy_bytes: int
    """The largest .npy distance-map upload."""


class AuthInfo(_Described):
    required: bool
    """Every /v1 request needs an API key (`Authorization: Bearer <key>`, or the page's session)."""


class InfoOut(BaseModel):
    version: str
    backend: str = Field(description="Where worlds run: local or sagemaker.")
    models: ModelsInfo
    defaults: DefaultsInfo
    limits: LimitsInfo
    auth: AuthInfo


def tiny_note(models_dir: Path) -> str | None:
    """The note `make-tiny` left in its marker (a default when it cannot be read)."""
    try:
        note = json.loads((models_dir / TINY_MARKER).read_text()).get("note")
    except (OSError, ValueError, AttributeError):
        note = None
    return str(note) if note else "random-weight test models: their output is noise"


@router.get("", response_model=InfoOut)
def info(state: AppState = Depends(app_state)) -> InfoOut:
    settings = state.settings
    models_dir = settings.resolved_models_dir
    tiny = models_are_tiny(models_dir)
    defaults = with_defaults(WorldRequest(prompt="-"), tiny)
    return InfoOut(
        version=__version__,
        backend=state.backend,
        models=ModelsInfo(tiny=tiny, note=tiny_note(models_dir) if tiny else None),
        defaults=DefaultsInfo(
            height=defaults.height, width=defaults.width, steps=defaults.steps, guidance=defaults.guidance,
            formats=[f.value for f in defaults.formats], scene=defaults.scene.value,
            precision=defaults.precision.value, step_cache=defaults.step_cache.value,
            vae_mode=defaults.vae_mode.value, depth_compression=defaults.depth_compression,
            layered=defaults.layered, inpaint_seed=defaults.inpaint_seed, stage=defaults.stage,
        ),
        limits=LimitsInfo(
            min_height=MIN_HEIGHT, max_height=MAX_HEIGHT, height_multiple=HEIGHT_MULTIPLE, max_steps=MAX_STEPS,
            max_prompt_chars=MAX_PROMPT_CHARS, max_labels=MAX_LABELS, max_label_chars=MAX_LABEL_CHARS,
            max_objects=MAX_OBJECTS, max_json_bytes=settings.max_json_bytes,
            upload_max_bytes=settings.upload_max_bytes, upload_max_npy_bytes=settings.upload_max_npy_bytes,
        ),
        auth=AuthInfo(required=state.auth_required),
    )  # fmt: skip
