"""`worldgen generate`: run the world pipeline in this process, no server."""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
from pathlib import Path

from worldgen.cli.requests import add_request_arguments, request_from_args
from worldgen.config import Settings
from worldgen.errors import InvalidRequest


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="generate a world in-process (no server)")
    add_request_arguments(parser)
    parser.add_argument("--stage", choices=["panorama", "world"], default="world", help="how far to go")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--image", type=Path, default=None, help="photo to outpaint into the panorama")
    parser.add_argument("--panorama", type=Path, default=None, help="use this 2:1 panorama instead of generating")
    parser.add_argument("--distance", type=Path, default=None, help=".npy distance map for --panorama")
    parser.add_argument("--device", default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from worldgen.models.runtime import ModelRuntime
    from worldgen.pipeline import WorldInputs, generate_world
    from worldgen.progress import Progress

    settings = Settings()
    files = {"image_upload_id": args.image, "panorama_upload_id": args.panorama, "distance_upload_id": args.distance}
    given = {field: path for field, path in files.items() if path is not None}
    for path in given.values():
        if not path.is_file():
            raise InvalidRequest(f"file not found: {path}")
    request = request_from_args(args, **{field: field for field in given})
    if request.seed is None:
        request = request.with_seed(secrets.randbelow(2**32))
    with tempfile.TemporaryDirectory(prefix="worldgen-inputs-") as tmp:
        inputs = WorldInputs(Path(tmp))
        for field, path in given.items():
            shutil.copyfile(path, Path(tmp) / field)
        runtime = ModelRuntime.create(
            args.models_dir or settings.resolved_models_dir,
            device=args.device or settings.device,
            precision=request.precision,
            allow_download=settings.allow_downloads,
            hf_token=settings.hf_token,
        )
        with tqdm(total=100, unit="%", bar_format="{desc:40.40} {percentage:3.0f}%|{bar}| {elapsed}") as bar:

            def sink(stage: str, fraction: float, message: str | None) -> None:
                bar.set_description(f"{stage} {message or ''}".strip())
                bar.n = round(fraction * 100)
                bar.refresh()

            progress = Progress(sink=sink)
            manifest = generate_world(request, runtime, args.out, progress, inputs, until=args.stage)
    for warning in progress.warnings:
        print(f"warning: {warning}")
    names = ", ".join(f["name"] for f in manifest["files"])
    print(f"wrote {names} and manifest.json to {args.out} (seed {request.seed}, {runtime.precision.mode.value})")
    return 0
