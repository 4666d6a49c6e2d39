"""Command-line flags ↔ WorldRequest, shared by `generate` and `submit`.

Every request flag defaults to None ("not given"): the request is made of the flags given only, so
that `submit` sends just those and the server fills in the rest (its defaults depend on its models:
128 px and 4 steps with the tiny test models), and `generate` applies the same model-dependent
defaults (`worldgen.defaults`) locally."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worldgen.defaults import FULL_DEFAULTS, TINY_DEFAULTS
from worldgen.errors import InvalidRequest
from worldgen.limits import MAX_HEIGHT, MAX_LABELS, MAX_STEPS, MIN_HEIGHT, PRECISION_MODES, STEP_CACHES, VAE_MODES
from worldgen.request import ExportFormat, Scene, WorldRequest

FORMATS = tuple(f.value for f in ExportFormat)
SCENES = tuple(s.value for s in Scene)
STAGES = ("panorama", "world")

INPUT_FLAGS = {"image_upload_id": "--image", "panorama_upload_id": "--panorama", "distance_upload_id": "--distance"}
"""Request fields that name a file, and the flag that gives the file."""
INPUT_KINDS = {"image_upload_id": "image", "panorama_upload_id": "panorama", "distance_upload_id": "distance"}
"""The upload kind (POST /v1/uploads) of each input file."""

FLAGS = {
    "prompt": "PROMPT",
    "depth_compression": "--no-depth-compression",
    "layered": "--single-layer",
    "source_world_id": "--source-world",
    **INPUT_FLAGS,
}
"""Request fields whose flag is not simply --field-name."""
_API_NAMES = re.compile(
    r"\b(image_upload_id|panorama_upload_id|distance_upload_id|source_world_id|negative_prompt|"
    r"true_cfg_scale|step_cache|vae_mode|labels_fg[12]|objects_fg[12]|inpaint_seed|"
    r"depth_compression)\b"
)


def flag_of(field: str) -> str:
    """The command-line spelling of a request field (or of a path into one, e.g. objects_fg1.0.box)."""
    head, *rest = field.split(".") if field else ["request"]
    flag = FLAGS.get(head, f"--{head.replace('_', '-')}")
    return " ".join([flag, *(f"#{int(p) + 1}" if p.isdigit() else p for p in rest)])


def with_flags(message: str) -> str:
    """`message` with the API's field names (panorama_upload_id, …) written as the flags that set them."""
    return _API_NAMES.sub(lambda m: flag_of(m.group(1)), message)


def add_request_arguments(parser: argparse.ArgumentParser, *, remote: bool) -> None:
    """The flags of a WorldRequest (the input files are `add_input_arguments`); `remote`: for
    `submit`, which can also start from a finished world (--source-world)."""
    given = "--panorama or --source-world" if remote else "--panorama"
    full, tiny = FULL_DEFAULTS, TINY_DEFAULTS
    parser.add_argument(
        "prompt",
        nargs="?",
        default=None,
        metavar="PROMPT",
        help=f"what the world should look like, in quotes (optional with {given})",
    )
    parser.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        default=None,
        help="what to steer away from; used only with --true-cfg-scale > 1 (default: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="0..2^32-1; the same seed and flags give the same world (default: random, printed)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"denoising steps of the panorama, 1..{MAX_STEPS} "
        f"(default: {full['steps']}, or {tiny['steps']} with the tiny test models)",
    )
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        metavar="PX",
        help=f"panorama height in pixels, a multiple of 16 in {MIN_HEIGHT}..{MAX_HEIGHT}; width = 2 × height "
        f"(default: {full['height']}, or {tiny['height']} with the tiny test models)",
    )
    parser.add_argument(
        "--guidance", type=float, default=None, metavar="G", help="FLUX guidance scale, 0..100 (default: 30.0)"
    )
    parser.add_argument(
        "--true-cfg-scale",
        type=float,
        default=None,
        metavar="S",
        help="true classifier-free guidance, 0..20; > 1 enables --negative-prompt and doubles the cost (default: off)",
    )
    parser.add_argument(
        "--step-cache",
        choices=STEP_CACHES,
        default=None,
        help="skip transformer work on some steps: faster, slightly different (default: off)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_MODES,
        default=None,
        help="how the FLUX transformer is stored and computed; auto picks by device (default: auto)",
    )
    parser.add_argument(
        "--vae-mode",
        choices=VAE_MODES,
        default=None,
        help="full-frame: exact VAE encode/decode; reference: HunyuanWorld-1.0's tiled VAE, bit for bit "
        "(default: full-frame)",
    )
    parser.add_argument(
        "--scene",
        choices=SCENES,
        default=None,
        help="outdoor also separates the sky into its own layer (default: outdoor)",
    )
    for layer, which in (("fg1", "first"), ("fg2", "second")):
        parser.add_argument(
            f"--labels-{layer}",
            action=_Flatten,
            type=_labels,
            default=None,
            metavar="LABELS",
            help=f"objects to lift into the {which} foreground layer: comma-separated or repeated "
            f"(--labels-{layer} tree,bench or --labels-{layer} tree --labels-{layer} bench); "
            f"at most {MAX_LABELS} (default: none, no such layer)",
        )
    parser.add_argument(
        "--formats",
        nargs="+",
        action=_Flatten,
        type=_formats,
        default=None,
        metavar="{" + ",".join(FORMATS) + "}",
        help="mesh files to write, comma- or space-separated (default: glb,ply)",
    )
    parser.add_argument(
        "--no-depth-compression",
        action="store_true",
        help="keep far depths as estimated (default: pull far background depths in)",
    )
    parser.add_argument(
        "--single-layer",
        action="store_true",
        help="one background mesh: no foreground layers, no inpainting, no sky (default: layered)",
    )
    parser.add_argument(
        "--objects-fg1",
        type=_objects,
        default=None,
        metavar="JSON",
        help=f"boxes of the first foreground layer, in pixels of the given panorama ({given}), "
        'e.g. \'[{"label": "tree", "box": [x0, y0, x1, y1]}]\' (default: none)',
    )
    parser.add_argument(
        "--objects-fg2",
        type=_objects,
        default=None,
        metavar="JSON",
        help="boxes of the second foreground layer, as --objects-fg1 (default: none)",
    )
    parser.add_argument(
        "--inpaint-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the inpainting passes, 0..2^32-1 (default: 25)",
    )


def add_input_arguments(parser: argparse.ArgumentParser, *, remote: bool) -> None:
    """The input files and --stage, the same for `generate` (read here) and `submit` (`remote`:
    uploaded to the server first)."""
    sent = " (uploaded first)" if remote else ""
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"a photo (PNG or JPEG) to outpaint into the panorama{sent}",
    )
    parser.add_argument(
        "--panorama",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"a 2:1 PNG or JPEG panorama to build the world from, instead of generating one{sent}",
    )
    parser.add_argument(
        "--distance",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"a 2:1 .npy float distance map for --panorama, instead of estimating depth{sent}",
    )
    parser.add_argument(
        "--stage",
        choices=STAGES,
        default=None,
        help="panorama: stop after the panorama (a quick preview); world: the whole world (default: world)",
    )


_ARG_FIELDS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "height",
    "guidance",
    "true_cfg_scale",
    "step_cache",
    "precision",
    "vae_mode",
    "scene",
    "labels_fg1",
    "labels_fg2",
    "formats",
    "objects_fg1",
    "objects_fg2",
    "inpaint_seed",
    "stage",
)


def request_from_args(args: argparse.Namespace, **extra: object) -> WorldRequest:
    """The request of the flags given (its `model_fields_set` is exactly those, plus `extra`).
    Errors name the flags, not the API's field names."""
    data: dict[str, Any] = {f: getattr(args, f) for f in _ARG_FIELDS if getattr(args, f, None) is not None}
    if args.no_depth_compression:
        data["depth_compression"] = False
    if args.single_layer:
        data["layered"] = False
    data.update(extra)
    try:
        return WorldRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problems(exc))
        if not hasattr(args, "source_world"):  # generate: no --source-world to suggest
            problems = problems.replace("give --source-world or --panorama", "give --panorama")
        raise InvalidRequest(f"invalid request: {problems}") from None


def _problems(exc: ValidationError) -> list[str]:
    from worldgen.request import error_field, error_message

    problems = []
    for error in exc.errors():
        field, message = error_field(error), with_flags(error_message(error))
        if error["type"] == "missing_prompt":
            problems.append(
                "the PROMPT argument is missing or blank: prompt must not be blank (unless a panorama is "
                'given): put it in quotes, e.g. "a lake at dawn"'
            )
        elif message.startswith(flag_of(field)):
            problems.append(message)
        else:
            problems.append(f"{flag_of(field)}: {message}")
    return problems


def input_files(args: argparse.Namespace) -> dict[str, Path]:
    """request field → the file given for it (--image, --panorama, --distance), each one found."""
    given: dict[str, Path] = {field: getattr(args, flag[2:]) for field, flag in INPUT_FLAGS.items()}
    given = {field: path for field, path in given.items() if path is not None}
    for field, path in given.items():
        if not path.exists():
            raise InvalidRequest(f"{INPUT_FLAGS[field]} {path}: file not found")
        if not path.is_file():
            raise InvalidRequest(f"{INPUT_FLAGS[field]} {path}: not a file")
    return given


def check_input_file(field: str, path: Path) -> tuple[int, int]:
    """The checks the API runs on an upload of this kind (worldgen.api.uploads), on a local file:
    readable PNG/JPEG, sizes, 2:1 panoramas, 2-D positive .npy distance maps. No byte limits: the
    file is not sent anywhere. Returns its (width, height)."""
    from worldgen.api.errors import ApiError
    from worldgen.api.uploads import check_upload

    flag, name, unlimited = INPUT_FLAGS[field], str(path), 1 << 62
    try:
        checked = check_upload(path, INPUT_KINDS[field], name, max_image=unlimited, max_npy=unlimited)
    except ApiError as exc:
        message = exc.message if exc.message.startswith(f"{name}:") else f"{name}: {exc.message}"
        raise InvalidRequest(f"{flag} {message}", code=exc.code) from None
    except OSError as exc:
        raise InvalidRequest(f"{flag} {name}: cannot read it ({exc.strerror or exc})") from None
    return checked.width, checked.height


class _Flatten(argparse.Action):
    """Collects the lists that `type` makes of each value (a flag may be repeated, and each value may
    be comma-separated) into one list."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        for value in values if self.nargs is not None else [values]:
            items.extend(value)
        setattr(namespace, self.dest, items)


def _labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",")]
    if not all(labels):
        raise argparse.ArgumentTypeError(f"{text!r}: empty label (give labels as tree,bench)")
    return labels


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    for value in formats or [text]:
        if value not in FORMATS:
            raise argparse.ArgumentTypeError(
                f"invalid format {value!r} (choose from {', '.join(FORMATS)}; put PROMPT before --formats)"
            )
    return formats


def _objects(text: str) -> list[dict]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError('expected a JSON list like [{"label": "tree", "box": [x0, y0, x1, y1]}]')
    return value
