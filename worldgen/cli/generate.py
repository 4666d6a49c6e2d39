"""`worldgen generate`: run the world pipeline in this process, no server."""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
from pathlib import Path

from worldgen.cli.common import ProgressLines, add_command, check_out, output_dir
from worldgen.cli.requests import (
    add_input_arguments,
    add_request_arguments,
    check_input_file,
    input_files,
    request_from_args,
)
from worldgen.config import Settings
from worldgen.errors import ModelMissing
from worldgen.limits import MAX_HEIGHT, MIN_HEIGHT

TINY_MODELS_HINT = (
    " To try worldgen without the real weights, make the tiny random-weight test models (their output is noise): "
    "`worldgen models make-tiny DIR`, then pass `--models-dir DIR` (or set WORLDGEN_MODELS_DIR=DIR)."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "generate",
        "generate a world in this process (no server)",
        "Runs every stage here, on this machine's GPU (or CPU), and writes the panorama, meshes and "
        "manifest.json into --out. The output folder is made only when there is something to write, and "
        "what this command made goes again if it fails.",
        """
worldgen generate "a lake at dawn, pine forest" --out lake
worldgen generate "a harbour" --stage panorama --height 512 --seed 7 --out preview
worldgen generate --panorama pano.png --distance distance.npy --single-layer --out room
worldgen models make-tiny tiny && worldgen generate "test" --models-dir tiny --out t""",
    )
    add_request_arguments(parser, remote=False)
    add_input_arguments(parser, remote=False)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder (made if needed; existing files of the same name are replaced)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cuda, cuda:1, cpu (default: WORLDGEN_DEVICE, else cuda if present)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="models root (default: WORLDGEN_MODELS_DIR, else DATA_DIR/models, or "
        "DATA_DIR/tiny-models where only that exists)",
    )
    parser.set_defaults(run=_run)


def _valid_height(height: int) -> bool:
    return MIN_HEIGHT <= height <= MAX_HEIGHT and height % 16 == 0


def _run(args: argparse.Namespace) -> int:
    from worldgen.defaults import models_are_tiny, with_defaults

    settings = Settings()
    models_dir = args.models_dir or settings.resolved_models_dir
    # Everything that can be checked without the models first: flags, then each file, then the models.
    check_out(args.out)
    given = input_files(args)
    request = request_from_args(args, **{field: field for field in given})
    sizes = {field: check_input_file(field, path) for field, path in given.items()}
    height = sizes.get("panorama_upload_id", (0, 0))[1]
    if height and "height" not in request.model_fields_set and _valid_height(height):
        request = request.model_copy(update={"height": height})  # the panorama's own, as the API does
    request = with_defaults(request, models_are_tiny(models_dir))
    if request.seed is None:
        request = request.with_seed(secrets.randbelow(2**32))

    from worldgen.models.runtime import ModelRuntime
    from worldgen.pipeline import WorldInputs, generate_world, models_needed
    from worldgen.progress import Progress

    runtime = ModelRuntime.create(
        models_dir,
        device=args.device or settings.device,
        precision=request.precision,
        allow_download=settings.allow_downloads,
        hf_token=settings.hf_token,
    )
    try:
        for name in models_needed(request):
            runtime.path(name)
    except ModelMissing as exc:
        if "make-tiny" in exc.message:  # the resolver's message says it already
            raise
        raise ModelMissing(exc.message + TINY_MODELS_HINT, details=exc.details) from None
    with (
        tempfile.TemporaryDirectory(prefix="worldgen-inputs-") as tmp,
        output_dir(args.out) as out,
        ProgressLines() as shown,
    ):
        for field, path in given.items():
            shutil.copyfile(path, Path(tmp) / field)
        progress = Progress(sink=lambda stage, fraction, message: shown.update(stage, fraction, message))
        manifest = generate_world(request, runtime, out, progress, WorldInputs(Path(tmp)))
    for warning in progress.warnings:
        print(f"warning: {warning}")
    names = ", ".join(f["name"] for f in manifest["files"])
    print(f"wrote {names} and manifest.json to {args.out} (seed {request.seed}, {runtime.precision.mode.value})")
    return 0
