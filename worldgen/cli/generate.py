"""`worldgen generate`: run generation in this process, no server."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from worldgen.config import Settings
from worldgen.errors import InvalidRequest


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="generate in-process (no server)")
    parser.add_argument("prompt", help="what the world should look like")
    parser.add_argument("--stage", choices=["panorama"], default="panorama", help="how far to go")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--image", type=Path, default=None, help="photo to outpaint into the panorama")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", type=int, default=None, help="0..2^32-1 (random if absent)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--width", type=int, default=None, help="default: 2 × height")
    parser.add_argument("--guidance", type=float, default=30.0)
    parser.add_argument("--true-cfg-scale", type=float, default=None)
    parser.add_argument("--step-cache", default="off", help="off | first-block | taylorseer")
    parser.add_argument("--precision", default=None, help="auto | fp32 | bf16 | fp8-storage | fp8")
    parser.add_argument("--device", default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.set_defaults(run=_run)


def load_photo(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise InvalidRequest(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest(f"cannot read image {path}: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    import secrets

    from tqdm import tqdm

    from worldgen.models.runtime import ModelRuntime
    from worldgen.progress import Progress
    from worldgen.stages.image_to_panorama import image_to_panorama
    from worldgen.stages.panorama import PanoramaSpec, validate_spec
    from worldgen.stages.text_to_panorama import text_to_panorama

    settings = Settings()
    spec = PanoramaSpec(
        prompt=args.prompt,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**32),
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width if args.width is not None else 2 * args.height,
        steps=args.steps,
        guidance=args.guidance,
        true_cfg_scale=args.true_cfg_scale,
        step_cache=args.step_cache,
    )
    validate_spec(spec)
    photo = load_photo(args.image) if args.image is not None else None
    runtime = ModelRuntime.create(
        args.models_dir or settings.resolved_models_dir,
        device=args.device or settings.device,
        precision=args.precision or settings.precision,
        allow_download=settings.allow_downloads,
        hf_token=settings.hf_token,
    )
    bar = tqdm(total=100, unit="%", bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}")

    def sink(stage: str, fraction: float, message: str | None) -> None:
        bar.set_description(f"{stage}: {message or ''}".strip())
        bar.n = round(fraction * 100)
        bar.refresh()

    progress = Progress(sink=sink)
    with bar:
        if photo is None:
            result = text_to_panorama(runtime, spec, progress)
        else:
            result = image_to_panorama(runtime, spec, photo, progress)
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "panorama.png"
    Image.fromarray(result.image).save(path)
    for warning in progress.warnings:
        print(f"warning: {warning}")
    print(f"panorama: {path} (seed {result.seed}, precision {runtime.precision.mode.value})")
    return 0
