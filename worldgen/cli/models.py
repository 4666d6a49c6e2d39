"""`worldgen models ...`: inspect, download and make tiny model directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldgen.cli.common import add_command
from worldgen.config import Settings
from worldgen.errors import InvalidRequest


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "models",
        "model files: list, download, make-tiny, mirror, prepare",
        "The models root is --dir, else WORLDGEN_MODELS_DIR, else DATA_DIR/models (or DATA_DIR/tiny-models "
        "where only that exists).",
        """
worldgen models list
worldgen models download flux-dev
worldgen models make-tiny ./tiny-models""",
    )
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION", help="what to do")
    root_help = "models root (default: WORLDGEN_MODELS_DIR, else DATA_DIR/models)"

    tiny = add_command(
        sub,
        "make-tiny",
        "write tiny random-weight twins of every model into DIR",
        "For tests and trying the service without the real weights (a few MB; their output is noise). "
        "Requests served from them default to 128 px and 4 steps.",
        'worldgen models make-tiny ./tiny-models\nworldgen generate "test" --models-dir ./tiny-models --out t',
    )
    tiny.add_argument("dir", type=Path, metavar="DIR", help="folder to write the tiny models into (made if needed)")
    tiny.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random weights")
    tiny.set_defaults(run=_make_tiny)

    listing = add_command(sub, "list", "show each model and whether its files are present")
    listing.add_argument("--dir", type=Path, default=None, help=root_help)
    listing.set_defaults(run=_list)

    mirror = add_command(
        sub,
        "mirror",
        "copy the models root to S3 (fetching missing models if allowed)",
        "SageMaker jobs mount the copy (WORLDGEN_MODELS_URL). Missing models are fetched first where "
        "WORLDGEN_ALLOW_DOWNLOADS=1.",
        "worldgen models mirror --to s3://my-bucket/worldgen/models",
    )
    mirror.add_argument("--to", required=True, metavar="S3_URL", help="destination, s3://bucket/prefix")
    mirror.add_argument("--dir", type=Path, default=None, help=root_help)
    mirror.add_argument("names", nargs="*", metavar="NAME", help="logical model names (default: all)")
    mirror.set_defaults(run=_mirror)

    prepare = add_command(
        sub,
        "prepare",
        "write the fp8, LoRA-fused model set (to a directory or S3)",
        examples="worldgen models prepare --out ./prepared\nworldgen models prepare --out s3://my-bucket/prepared",
    )
    prepare.add_argument("--out", required=True, metavar="DIR_OR_S3_URL", help="a directory or s3://bucket/prefix")
    prepare.add_argument("--dir", type=Path, default=None, help="source " + root_help)
    prepare.set_defaults(run=_prepare)

    download = add_command(
        sub,
        "download",
        "fetch models from their sources into the models root",
        "Gated models (FLUX.1) need their licence accepted on the Hugging Face hub and HF_TOKEN set.",
        "worldgen models download\nworldgen models download flux-dev --dir /data/models",
    )
    download.add_argument("names", nargs="*", metavar="NAME", help="logical model names (default: all)")
    download.add_argument("--dir", type=Path, default=None, help=root_help)
    download.set_defaults(run=_download)


def _root(args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else Settings().resolved_models_dir


def _make_tiny(args: argparse.Namespace) -> int:
    from worldgen.models.tiny import make_tiny

    folders = make_tiny(args.dir, seed=args.seed)
    size = sum(p.stat().st_size for p in Path(args.dir).rglob("*") if p.is_file())
    print(f"wrote {len(folders)} tiny models to {args.dir} ({size / 1e6:.1f} MB, seed {args.seed})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from worldgen.models.registry import MODELS
    from worldgen.models.resolver import missing_files

    root = _root(args)
    for name, spec in MODELS.items():
        missing = missing_files(root / spec.relative_dir, spec)
        state = "ok" if not missing else f"missing {len(missing)} file(s), e.g. {missing[0]}"
        print(f"{name:20s} {spec.relative_dir:55s} {state}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from worldgen.models.registry import MODELS, get_spec
    from worldgen.models.resolver import download

    root = _root(args)
    names = args.names or list(MODELS)
    for name in names:
        try:
            spec = get_spec(name)
        except KeyError as exc:
            raise InvalidRequest(str(exc.args[0])) from None
        print(f"downloading {name} ({spec.repo_id}) → {root / spec.relative_dir}")
        download(spec, root, token=Settings().hf_token)
    return 0


def _mirror(args: argparse.Namespace) -> int:
    from worldgen.models.mirror import mirror
    from worldgen.models.resolver import ModelResolver

    settings = Settings()
    resolver = ModelResolver(_root(args), allow_download=settings.allow_downloads, hf_token=settings.hf_token)
    marker = mirror(resolver, args.to, args.names or None)
    print(f"mirrored {len(marker['models'])} models ({marker['total_bytes'] / 1e9:.1f} GB) to {args.to}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import tempfile

    from worldgen.models.mirror import mirror
    from worldgen.models.prepared import prepare
    from worldgen.models.resolver import ModelResolver

    source = _root(args)
    if not args.out.startswith("s3://"):
        done, missing = prepare(source, Path(args.out))
        print(f"wrote the prepared model set ({len(done)} models) to {args.out}")
    else:
        with tempfile.TemporaryDirectory(prefix="worldgen-prepared-") as tmp:
            done, missing = prepare(source, Path(tmp))
            marker = mirror(ModelResolver(Path(tmp)), args.out, done)
        print(f"wrote the prepared model set ({marker['total_bytes'] / 1e9:.1f} GB) to {args.out}")
    if missing:
        print(f"not in {source} (not copied): {', '.join(missing)}")
    return 0
