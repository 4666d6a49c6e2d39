"""`worldgen` entry point: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys

from worldgen import __version__
from worldgen.errors import WorldgenError


def build_parser() -> argparse.ArgumentParser:
    from worldgen.cli import client, generate, models, service

    parser = argparse.ArgumentParser(prog="worldgen", description="Text → 3D world generation.")
    parser.add_argument("--version", action="version", version=f"worldgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models.register(commands)
    generate.register(commands)
    service.register(commands)
    client.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from worldgen import logs

    logs.configure()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except WorldgenError as exc:
        print(f"worldgen: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("worldgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
