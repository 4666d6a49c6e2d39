"""`worldgen` entry point: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys
import textwrap

from worldgen import __version__
from worldgen.errors import WorldgenError


def build_parser() -> argparse.ArgumentParser:
    from worldgen.cli import client, generate, models, service
    from worldgen.cli.common import Parser

    parser = Parser(
        prog="worldgen",
        description=textwrap.fill(
            "Text → 3D world generation: in this process (generate), as a service (serve, worker), "
            "or as a client of one (submit, status, jobs, cancel, delete, download).",
            88,
        ),
        epilog=textwrap.fill(
            "`worldgen COMMAND --help` describes each command. Client commands talk to --server "
            "(default: WORLDGEN_SERVER_URL, else http://127.0.0.1:8000) and send WORLDGEN_API_KEY as their key.",
            88,
        ),
    )
    parser.add_argument("--version", action="version", version=f"worldgen {__version__}", help="show the version")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`worldgen COMMAND --help` for its flags"
    )
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
