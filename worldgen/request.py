"""The world request: one schema for the API, the job store, the container and the CLI.

Limits live here so that every entry point rejects the same things with the same messages.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from worldgen.limits import (
    DEFAULT_HEIGHT,
    MAX_HEIGHT,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_PROMPT_CHARS,
    MAX_STEPS,
    MIN_HEIGHT,
    SEED_LIMIT,
    Precision,
    StepCache,
    VaeMode,
)

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_CHARS)]
MAX_OBJECTS = 16


class BoxedObject(BaseModel):
    """An object the user drew: a label and a box in the pixels of the stored panorama."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label
    box: tuple[float, float, float, float] = Field(
        description="x0, y0, x1, y1 in panorama pixels; x1 may reach 2 × width for a box across the seam."
    )

    @field_validator("box")
    @classmethod
    def _positive(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not all(math.isfinite(v) for v in box):
            raise ValueError("box coordinates must be finite numbers")
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise ValueError("a box needs x1 > x0 and y1 > y0")
        if x0 < 0 or y0 < 0:
            raise ValueError("box coordinates must not be negative")
        return box

    def check_inside(self, width: int, height: int) -> str | None:
        x0, _, x1, y1 = self.box
        if x0 >= width or y1 > height or x1 > 2 * width or x1 - x0 > width:
            return f"box {list(self.box)} is outside the {width}×{height} panorama (x1 may reach {2 * width})"
        return None


class Scene(StrEnum):
    OUTDOOR = "outdoor"
    INDOOR = "indoor"


class ExportFormat(StrEnum):
    PLY = "ply"
    GLB = "glb"
    DRC = "drc"


class WorldRequest(BaseModel):
    """What a client asks for. Unknown fields are rejected rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(
        "", max_length=MAX_PROMPT_CHARS, description="What the world should look like (optional with a panorama)."
    )
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Needs true_cfg_scale > 1.")
    true_cfg_scale: float | None = Field(
        None, ge=0, le=20, description="True CFG; > 1 enables the negative prompt and doubles the cost."
    )
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT, description="Random (and recorded) if absent.")
    scene: Scene = Scene.OUTDOOR
    labels_fg1: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    labels_fg2: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    formats: list[ExportFormat] = Field(
        default_factory=lambda: [ExportFormat.GLB, ExportFormat.PLY], min_length=1, max_length=3
    )
    precision: Precision = Precision.AUTO
    height: int = Field(
        DEFAULT_HEIGHT,
        ge=MIN_HEIGHT,
        le=MAX_HEIGHT,
        description="Panorama height; width = 2 × height. Left out: 960, or 128 where the server runs the tiny "
        "test models (GET /v1/info says), or a given panorama's own.",
    )
    steps: int = Field(
        50, ge=1, le=MAX_STEPS, description="Sampling steps. Left out: 50, or 4 with the tiny test models."
    )
    guidance: float = Field(30.0, ge=0, le=100)
    step_cache: StepCache = StepCache.OFF
    vae_mode: VaeMode = Field(
        VaeMode.FULL_FRAME,
        description="full-frame: exact VAE encode/decode; reference: HunyuanWorld-1.0's tiled VAE, bit for bit.",
    )
    image_upload_id: str | None = Field(None, description="A photo to outpaint into the panorama (POST /v1/uploads).")
    panorama_upload_id: str | None = Field(None, description="Use this 2:1 panorama instead of generating one.")
    distance_upload_id: str | None = Field(
        None, description="A .npy distance map for the uploaded panorama (skips depth estimation)."
    )
    depth_compression: bool = Field(True, description="Pull far background depths in (method §4.7).")
    layered: bool = Field(
        True, description="Foreground layers, inpainting and the sky layer; false: one background mesh only."
    )
    objects_fg1: list[BoxedObject] = Field(default_factory=list, max_length=MAX_OBJECTS)
    objects_fg2: list[BoxedObject] = Field(default_factory=list, max_length=MAX_OBJECTS)
    source_world_id: str | None = Field(
        None,
        description="Re-layer this finished world's panorama. Fields left out are taken from its request (formats, "
        "scene, steps, precision, …; its seed too), except labels, boxes, inputs and webhook. A finished world "
        "needs a box or a label to re-layer; a preview (stage: panorama) becomes a world without.",
    )
    inpaint_seed: int = Field(25, ge=0, lt=SEED_LIMIT, description="Seed of the inpainting passes.")
    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description="POSTed a signed event (Standard Webhooks) at every status change of the world.",
    )
    stage: Literal["panorama", "world"] = Field(
        "world",
        description="panorama: stop after the panorama (a quick preview); then build the world from it with "
        "source_world_id, without generating it again.",
    )

    @model_validator(mode="after")
    def _inputs_consistent(self) -> WorldRequest:
        if not self.prompt.strip() and not self.panorama_upload_id and not self.source_world_id:
            raise PydanticCustomError(
                "missing_prompt", "prompt must not be blank (unless a panorama is given)", {"field": "prompt"}
            )
        sources = [f for f in ("image_upload_id", "panorama_upload_id", "source_world_id") if getattr(self, f)]
        if len(sources) > 1:
            raise PydanticCustomError(
                "conflict",
                "give at most one of image_upload_id, panorama_upload_id, source_world_id",
                {"field": sources[-1]},
            )
        if (self.objects_fg1 or self.objects_fg2) and not (self.panorama_upload_id or self.source_world_id):
            raise PydanticCustomError(
                "conflict",
                "boxes need a panorama to be drawn on: give source_world_id or panorama_upload_id",
                {"field": "objects_fg1" if self.objects_fg1 else "objects_fg2"},
            )
        if self.distance_upload_id and not self.panorama_upload_id:
            raise PydanticCustomError(
                "conflict", "distance_upload_id needs the panorama_upload_id it belongs to",
                {"field": "distance_upload_id"},
            )  # fmt: skip
        if self.stage == "panorama" and (self.panorama_upload_id or self.source_world_id):
            raise PydanticCustomError(
                "conflict", "stage 'panorama' previews a generated panorama; this request already has one",
                {"field": "stage"},
            )  # fmt: skip
        return self

    @field_validator("height")
    @classmethod
    def _height_multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(f"height must be a multiple of 16 (got {value})")
        return value

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, value: list[ExportFormat]) -> list[ExportFormat]:
        if len(set(value)) != len(value):
            raise ValueError("formats must not repeat")
        return value

    @property
    def width(self) -> int:
        return 2 * self.height

    def with_seed(self, seed: int) -> WorldRequest:
        return self.model_copy(update={"seed": seed})

    def fingerprint(self) -> str:
        """Stable hash of the request as sent (for idempotency keys)."""
        data = self.model_dump(mode="json", exclude_defaults=False)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def objects(self, layer: str) -> list[dict[str, object]]:
        return [o.model_dump() for o in getattr(self, f"objects_{layer}")]

    def upload_ids(self) -> list[str]:
        return [u for u in (self.image_upload_id, self.panorama_upload_id, self.distance_upload_id) if u]


def error_field(error: Mapping[str, Any]) -> str:
    """The field a pydantic error is about (model-level errors name it in their context)."""
    field = ".".join(str(part) for part in error["loc"] if part != "body")
    return field or str((error.get("ctx") or {}).get("field", ""))


def error_message(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per problem, without pydantic's 'Value error, ' prefix."""
    return [(error_field(e), error_message(e)) for e in exc.errors()]
