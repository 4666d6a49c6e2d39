"""What every command shares: help formatting, output folders that vanish on failure, progress lines."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written, and appends "(default: …)" to an option's help
    where there is a default worth showing and the help does not already say it."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default in ("", [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else "%(default)s"
            return f"{text} (default: {shown})"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with `HelpFormatter`; sub-command parsers are made of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_command(
    commands: argparse._SubParsersAction, name: str, summary: str, details: str = "", examples: str = ""
) -> argparse.ArgumentParser:
    """A sub-command: `summary` is its line in the parent's list and the first line of its own help;
    `details` more description; `examples` an epilog of command lines."""
    description = summary[0].upper() + summary[1:] + "."
    if details:
        description += "\n\n" + textwrap.fill(details, width=88, break_on_hyphens=False)
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()) if examples else None
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=description, epilog=epilog)
    return parser


def check_out(path: Path) -> Path:
    """An --out that exists must be a folder (checked before any slow work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        from worldgen.errors import InvalidRequest

        raise InvalidRequest(f"--out {path}: exists and is not a folder")
    return path


@contextmanager
def output_dir(path: Path) -> Iterator[Path]:
    """A folder for a command's output, which the command creates (with its parents) only when it
    has something to write. If the command fails (or is interrupted), what it created goes again:
    the folder and the parents it made, or, in a folder that existed before, the files and folders
    that were not there; a folder that existed before is never removed."""
    path = check_out(path)
    top = None  # the outermost folder this command will create
    for folder in (path, *path.parents):
        if folder.exists():
            break
        top = folder
    before = set(path.rglob("*")) if top is None else set()
    try:
        yield path
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        elif path.is_dir():
            made = sorted(set(path.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True)
            for item in made:
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
        raise


def percent(fraction: float) -> str:
    return f"{fraction * 100:3.0f}%"


class ProgressLines:
    """Progress of a world: a bar on a terminal; elsewhere (logs, pipes) one line per change of
    stage or message, so that a log shows every sub-step ("panorama step 2/4")."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.last: tuple[str, str] | None = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=100, unit="%", file=self.stream, bar_format="{desc:48.48} {percentage:3.0f}%|{bar}| {elapsed}"
            )

    def update(self, stage: str | None, fraction: float, message: str | None, status: str | None = None) -> None:
        words = [w for w in (status, stage, message) if w]
        text = " ".join(words)
        if self.bar is not None:
            self.bar.set_description(text)
            self.bar.n = round(fraction * 100)
            self.bar.refresh()
            return
        key = (f"{status} {stage}", message or "")
        if key != self.last:
            self.last = key
            print(f"{percent(fraction)}  {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
