"""What each file of a world is, for people: one table of titles, descriptions and groups.

The API lists a world's files with these (ArtifactOut), the archive's file names follow the
artifact names, and the backends record each mesh file's layer name when they store a world's
files (the manifest knows which layer mesh_layerN is), so a description can name it.
Kept free of heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Group = Literal["world", "layer", "image", "data"]
"""world: the whole world to open in a viewer; layer: one layer's mesh; image: panoramas, masks
and the thumbnail; data: arrays, JSON and the manifest."""

LAYER_NAMES = {"fg1": "Foreground 1", "fg2": "Foreground 2", "background": "Background", "sky": "Sky"}


@dataclass(frozen=True)
class ArtifactKind:
    pattern: re.Pattern[str]
    group: Group
    title: str
    description: str
    """`{layer}` (the layer's name, e.g. "Background") and `{index}` are filled in."""


def _kind(pattern: str, group: Group, title: str, description: str) -> ArtifactKind:
    return ArtifactKind(re.compile(pattern), group, title, description)


ARTIFACT_KINDS: tuple[ArtifactKind, ...] = (
    _kind(r"world\.glb", "world", "World (glTF)",
          "Layered world, glTF binary — opens in Blender, three.js, model viewers"),
    _kind(r"world_preview\.glb", "world", "World preview (glTF)",
          "Light preview of the world for the web viewer (meshes at most 1024 wide)"),
    _kind(r"mesh_layer(?P<index>\d+)\.ply", "layer", "{layer} mesh (PLY)",
          "{layer} layer mesh (PLY, sRGB vertex colours; +z up, the panorama's centre along -x)"),
    _kind(r"mesh_layer(?P<index>\d+)\.drc", "layer", "{layer} mesh (Draco)",
          "{layer} layer mesh, Draco-compressed (sRGB vertex colours; +z up, as the PLY)"),
    _kind(r"panorama\.png", "image", "Panorama",
          "The 360° panorama the world is built from (equirectangular PNG, 2:1)"),
    _kind(r"preview\.jpg", "image", "Thumbnail", "1024 × 512 JPEG preview of the panorama"),
    _kind(r"full_image_sr\.png", "image", "Panorama, super-resolved",
          "The panorama at twice the size (Real-ESRGAN): what the layers are cut from"),
    _kind(r"remove_(?P<layer>fg1|fg2)_image\.png", "image", "Panorama without {layer}",
          "The panorama with the {layer} layer's objects painted away"),
    _kind(r"remove_(?P<layer>fg1|fg2)_image_sr\.png", "image", "Panorama without {layer}, super-resolved",
          "The panorama with the {layer} layer's objects painted away, at twice the size"),
    _kind(r"(?P<layer>fg1|fg2)_mask\.png", "image", "{layer} mask",
          "The {layer} layer's objects: one grey level per object, 0 elsewhere (super-resolved size)"),
    _kind(r"sky_image\.png", "image", "Sky", "The panorama with the ground painted over with sky (the sky layer)"),
    _kind(r"sky_image_sr\.png", "image", "Sky, super-resolved", "The sky layer's panorama at twice the size"),
    _kind(r"sky_mask\.png", "image", "Sky mask", "White where there is no sky: the region painted over for the sky"),
    _kind(r"(?P<layer>fg1|fg2)\.json", "data", "{layer} objects",
          "Boxes, labels and scores of the {layer} layer's objects (JSON)"),
    _kind(r"distance\.npy", "data", "Distance map",
          "Ray distance from the centre per panorama pixel (NumPy float16 array, height × width)"),
    _kind(r"manifest\.json", "data", "Manifest",
          "How the world was made: request, seed, settings, layers, timings, and every file's SHA-256"),
)  # fmt: skip


@dataclass(frozen=True)
class ArtifactText:
    title: str
    description: str
    group: Group


def describe(name: str, layer: str | None = None) -> ArtifactText:
    """Title, description and group of a world's file `name`; `layer`: the layer a mesh file
    holds (its name in the manifest: fg1, fg2, background or sky), where known."""
    for kind in ARTIFACT_KINDS:
        match = kind.pattern.fullmatch(name)
        if match is None:
            continue
        groups = match.groupdict()
        if "index" in groups:
            shown = LAYER_NAMES.get(layer or "", f"Layer {groups['index']}")
        else:
            shown = LAYER_NAMES.get(groups.get("layer") or "", "")
        values = {"layer": shown, "index": groups.get("index", "")}
        return ArtifactText(kind.title.format(**values), kind.description.format(**values), kind.group)
    return ArtifactText(name, "", "data")


_MESH = re.compile(r"mesh_layer(\d+)\.\w+")


def mesh_layer(name: str, manifest: Mapping[str, Any]) -> str | None:
    """The layer name (fg1, fg2, background, sky) a mesh file holds, from the manifest's layers."""
    match = _MESH.fullmatch(name)
    if match is None:
        return None
    index = int(match.group(1))
    return next((str(layer["name"]) for layer in manifest.get("layers") or [] if layer.get("index") == index), None)


def artifact_entry(name: str, info: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the job store keeps for one stored file: name, size, sha256, content type, and the
    layer of a mesh file. `info`: the storage's ArtifactInfo, or a manifest entry (a mapping)."""
    values = info if isinstance(info, Mapping) else vars(info)
    entry = {"name": name, **{k: values[k] for k in ("size", "sha256", "content_type")}}
    layer = mesh_layer(name, manifest)
    if layer is not None:
        entry["layer"] = layer
    return entry
