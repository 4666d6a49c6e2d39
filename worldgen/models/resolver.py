"""Find a model's files under the models root, fetching them from their source when allowed."""

from __future__ import annotations

import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worldgen.errors import ModelMissing
from worldgen.models.registry import ModelSpec, get_spec, missing_files

if TYPE_CHECKING:
    from worldgen.models.streaming import ModelStream


TINY_MODELS_HINT = (
    "Or, to try the service without weights: `worldgen models make-tiny DIR` and set WORLDGEN_MODELS_DIR=DIR "
    "(or --models-dir DIR); the tiny random-weight test models make noise, not worlds."
)


@dataclass
class ModelResolver:
    """Maps logical model names to folders under `root`.

    `allow_download=False` (the default in services and tests) never touches the network:
    a missing file is an error that names the path and the command that fetches it.
    With a `stream` (models arriving from S3 while the job runs), a missing model it fetches is
    waited for instead.
    """

    root: Path
    allow_download: bool = False
    hf_token: str | None = None
    stream: ModelStream | None = None

    def folder(self, name: str) -> Path:
        return self.root / get_spec(name).relative_dir

    def local(self, name: str) -> Path | None:
        """The model's folder if it is complete under `root`, else None; never downloads."""
        folder = self.folder(name)
        return None if missing_files(folder, get_spec(name)) else folder

    def resolve(self, name: str) -> Path:
        """Return the model's folder, complete; fetch it first if allowed."""
        spec = get_spec(name)
        folder = self.folder(name)
        missing = missing_files(folder, spec)
        if missing and self.stream is not None and name in self.stream:
            self.stream.wait(name)  # raises ModelMissing if it cannot arrive
            missing = missing_files(folder, spec)
        if not missing:
            return folder
        if not self.allow_download:
            raise ModelMissing(
                f"model {name!r} ({spec.description}) is incomplete: missing {missing[0]}"
                + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
                + f". Fetch it with `worldgen models download {name} --dir {self.root}`"
                + (" (gated on the hub: set HF_TOKEN)" if spec.gated else "")
                + ", or set WORLDGEN_ALLOW_DOWNLOADS=1. "
                + TINY_MODELS_HINT,
                details={"model": name, "missing": [str(p) for p in missing]},
            )
        download(spec, self.root, token=self.hf_token)
        missing = missing_files(folder, spec)
        if missing:
            raise ModelMissing(
                f"model {name!r} was downloaded but is still missing {missing[0]}",
                details={"model": name, "missing": [str(p) for p in missing]},
            )
        return folder


def download(spec: ModelSpec, root: Path, *, token: str | None = None) -> Path:
    """Fetch one model into `root` in its repository layout; returns its folder."""
    target = root / spec.relative_dir
    if spec.url is not None:
        return _download_url(spec, target)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(
            spec.repo_id,
            local_dir=root / spec.repo_id,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None,
            token=token or os.environ.get("HF_TOKEN") or None,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        hint = " The repository is gated: accept its licence on the hub and set HF_TOKEN." if spec.gated else ""
        raise ModelMissing(
            f"could not download {spec.repo_id} into {root / spec.repo_id}: {exc}.{hint}",
            details={"model": spec.name},
        ) from exc
    return target


def _download_url(spec: ModelSpec, target: Path) -> Path:
    assert spec.url is not None
    name = spec.url.rsplit("/", 1)[-1]
    target.mkdir(parents=True, exist_ok=True)
    final = target / name
    part = target / f".{name}.part"
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        part.replace(final)
    except OSError as exc:
        raise ModelMissing(f"could not download {spec.url} to {final}: {exc}", details={"model": spec.name}) from exc
    finally:
        part.unlink(missing_ok=True)
    return target
