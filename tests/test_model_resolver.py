"""The resolver finds models in the hub layout, explains what is missing, and downloads when allowed."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
from pathlib import Path

import pytest

from worldgen.errors import ModelMissing
from worldgen.models.registry import get_spec
from worldgen.models.resolver import ModelResolver, download


def test_resolves_tiny_models(tiny_models: Path) -> None:
    resolver = ModelResolver(tiny_models)
    assert resolver.resolve("flux-dev") == tiny_models / "black-forest-labs/FLUX.1-dev"
    assert resolver.resolve("lora-pano-text") == tiny_models / "tencent/HunyuanWorld-1/HunyuanWorld-PanoDiT-Text"


def test_missing_model_names_path_and_command(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as info:
        ModelResolver(tmp_path).resolve("flux-dev")
    message = info.value.message
    assert str(tmp_path / "black-forest-labs/FLUX.1-dev/model_index.json") in message
    assert f"worldgen models download flux-dev --dir {tmp_path}" in message
    assert "HF_TOKEN" in message
    # and how to try the service without the (gated, 70 GB) weights
    assert "`worldgen models make-tiny DIR` and set WORLDGEN_MODELS_DIR=DIR (or --models-dir DIR)" in message


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown model 'flux-pro'"):
        ModelResolver(tmp_path).resolve("flux-pro")


def test_hub_download_offline_is_a_clear_error(tmp_path: Path) -> None:
    resolver = ModelResolver(tmp_path, allow_download=True)
    with pytest.raises(ModelMissing, match="could not download Ruicheng/moge-vitl"):
        resolver.resolve("moge")


def test_url_download_into_the_layout(tmp_path: Path) -> None:
    """Real-ESRGAN comes from a release URL: fetched over HTTP into the same layout."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "RealESRGAN_x2plus.pth").write_bytes(b"weights" * 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        spec = dataclasses.replace(
            get_spec("esrgan"), url=f"http://127.0.0.1:{server.server_port}/RealESRGAN_x2plus.pth"
        )
        folder = download(spec, tmp_path / "models")
        assert (folder / "RealESRGAN_x2plus.pth").read_bytes() == b"weights" * 100
        assert folder == tmp_path / "models/xinntao/Real-ESRGAN"
        assert not list(folder.glob(".*.part"))
        broken = dataclasses.replace(spec, url=f"http://127.0.0.1:{server.server_port}/absent.pth")
        with pytest.raises(ModelMissing, match="could not download"):
            download(broken, tmp_path / "other")
        assert not list((tmp_path / "other/xinntao/Real-ESRGAN").glob(".*"))
    finally:
        server.shutdown()
