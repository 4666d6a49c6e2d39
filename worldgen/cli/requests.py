"""Command-line flags ↔ WorldRequest, shared by `generate` and `submit`."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from worldgen.errors import InvalidRequest
from worldgen.request import WorldRequest, validation_problems


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default="", help="what the world should look like")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", type=int, default=None, help="0..2^32-1 (random if absent)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--height", type=int, default=960, help="panorama height; width = 2 × height")
    parser.add_argument("--guidance", type=float, default=30.0)
    parser.add_argument("--true-cfg-scale", type=float, default=None)
    parser.add_argument("--step-cache", default="off", help="off | first-block | taylorseer")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp8-storage | fp8")
    parser.add_argument(
        "--vae-mode",
        default="full-frame",
        help="full-frame (exact, default) | reference (HunyuanWorld-1.0's tiled VAE, bit for bit)",
    )
    parser.add_argument("--scene", default="outdoor", help="outdoor | indoor")
    parser.add_argument("--labels-fg1", nargs="*", default=[], help="object labels of the first foreground layer")
    parser.add_argument("--labels-fg2", nargs="*", default=[], help="object labels of the second foreground layer")
    parser.add_argument("--formats", nargs="+", default=["glb", "ply"], help="any of ply, glb, drc")
    parser.add_argument("--no-depth-compression", action="store_true", help="keep far depths as estimated")
    parser.add_argument("--single-layer", action="store_true", help="one background mesh: no layers, no sky")
    parser.add_argument(
        "--objects-fg1",
        type=_objects,
        default=[],
        metavar="JSON",
        help='boxes for layer 1, e.g. \'[{"label": "tree", "box": [x0, y0, x1, y1]}]\'',
    )
    parser.add_argument("--objects-fg2", type=_objects, default=[], metavar="JSON", help="boxes for layer 2")
    parser.add_argument("--inpaint-seed", type=int, default=25)


def request_from_args(args: argparse.Namespace, **extra: object) -> WorldRequest:
    data = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "seed": args.seed,
        "steps": args.steps,
        "height": args.height,
        "guidance": args.guidance,
        "true_cfg_scale": args.true_cfg_scale,
        "step_cache": args.step_cache,
        "precision": args.precision,
        "vae_mode": args.vae_mode,
        "scene": args.scene,
        "labels_fg1": args.labels_fg1,
        "labels_fg2": args.labels_fg2,
        "formats": args.formats,
        "depth_compression": not args.no_depth_compression,
        "layered": not args.single_layer,
        "objects_fg1": args.objects_fg1,
        "objects_fg2": args.objects_fg2,
        "inpaint_seed": args.inpaint_seed,
        **extra,
    }
    try:
        return WorldRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"--{field.replace('_', '-')}: {message}" for field, message in validation_problems(exc))
        raise InvalidRequest(f"invalid request: {problems}") from None


def _objects(text: str) -> list[dict]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError('expected a JSON list like [{"label": "tree", "box": [x0, y0, x1, y1]}]')
    return value
