"""Models streamed from an S3 mirror (moto's server over HTTP) into a models root: byte-identical
files through ranged GETs, the job's order, clear errors, local models skipped, the resolver
blocking until a model arrived, and never a partial file under its final name."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from worldgen.defaults import TINY_MARKER
from worldgen.errors import ModelMissing
from worldgen.models.mirror import SET_MARKER, mirror
from worldgen.models.registry import MODELS, get_spec
from worldgen.models.resolver import ModelResolver
from worldgen.models.streaming import ModelStream

BUCKET = "worldgen-stream-test"
CHUNK = 64 << 10  # tiny parts: every weight file above 64 KiB arrives in several ranged GETs


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from tests.aws import moto_server

    with moto_server() as url:
        yield url


def client_for(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(max_pool_connections=16),
    )  # fmt: skip


@pytest.fixture
def s3(endpoint: str) -> Any:
    return client_for(endpoint)


@pytest.fixture(scope="module")
def models_url(endpoint: str, tiny_models: Path) -> str:
    """The whole tiny set mirrored once; tests that change objects mirror their own prefix."""
    client = client_for(endpoint)
    client.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/models"
    mirror(ModelResolver(tiny_models), url, client=client)
    return url


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def get_object_calls(client: Any) -> list[dict[str, Any]]:
    """GetObject parameters as the transfer manager sends them (Key, Range, IfMatch)."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: calls.append(dict(params)))
    return calls


def test_all_files_arrive_byte_identical(models_url: str, s3: Any, tiny_models: Path, tmp_path: Path) -> None:
    calls = get_object_calls(s3)
    heads: list[str] = []
    s3.meta.events.register("before-parameter-build.s3.HeadObject", lambda params, **_: heads.append(params["Key"]))
    root = tmp_path / "models"
    with ModelStream(models_url, root, list(MODELS), s3, max_concurrency=8, chunk_bytes=CHUNK) as stream:
        folders = {name: stream.wait(name, timeout=60) for name in MODELS}
    for name, folder in folders.items():
        assert folder == root / get_spec(name).relative_dir
        assert ModelResolver(root).local(name) == folder
    model_files = {k: v for k, v in files_under(tiny_models).items() if k != TINY_MARKER}  # a note, not a model
    assert files_under(root) == model_files  # nothing more (no marker, no .part), nothing less
    assert not (root / SET_MARKER).exists()
    stats = stream.stats()
    sizes = [len(data) for data in model_files.values()]
    assert (stats.bytes, stats.files) == (sum(sizes), len(sizes))
    assert set(stats.ready_s) == set(MODELS) and not stats.failed and not stats.skipped
    assert stats.model_bytes["moge"] == (tiny_models / "Ruicheng/moge-vitl/model.pt").stat().st_size
    # Big files came in parts, each GET pinned to the listed ETag; no HEAD per file.
    ranged = [call for call in calls if call.get("Range")]
    assert len({call["Key"] for call in ranged}) >= 10
    assert all(call.get("IfMatch") for call in ranged) and heads == []
    moge = [call["Range"] for call in ranged if call["Key"].endswith("moge-vitl/model.pt")]
    assert len(moge) == -(-stats.model_bytes["moge"] // CHUNK) > 1


def test_first_model_ready_while_the_last_is_still_held(models_url: str, s3: Any, tmp_path: Path) -> None:
    """The last model's GETs are held at the client until the first models were handed over."""
    release = threading.Event()
    held: list[str] = []

    def hold(params: dict[str, Any], **_: Any) -> None:
        if "FLUX.1-dev/" in params["Key"]:
            held.append(params["Key"])
            release.wait(30)

    s3.meta.events.register("before-parameter-build.s3.GetObject", hold)
    order = ["lora-pano-text", "moge", "flux-dev"]
    stream = ModelStream(models_url, tmp_path / "models", order, s3, max_concurrency=2, chunk_bytes=CHUNK).start()
    try:
        first = stream.wait("lora-pano-text", timeout=30)
        assert ModelResolver(tmp_path / "models").local("lora-pano-text") == first
        stream.wait("moge", timeout=30)
        with pytest.raises(TimeoutError, match="flux-dev"):
            stream.wait("flux-dev", timeout=0.2)
        assert "flux-dev" not in stream.stats().ready_s
        assert ModelResolver(tmp_path / "models").local("flux-dev") is None
    finally:
        release.set()
    stream.wait("flux-dev", timeout=30)
    stream.close()
    ready = stream.stats().ready_s
    assert held and ready["lora-pano-text"] <= ready["moge"] < ready["flux-dev"]


def test_throttled_stream_follows_the_order(models_url: str, s3: Any, tmp_path: Path) -> None:
    """One request at a time: models are settled in the order given, not the registry's."""
    order = ["esrgan", "moge", "lora-inpaint-sky", "flux-fill"]
    with ModelStream(models_url, tmp_path / "models", order, s3, max_concurrency=1, chunk_bytes=CHUNK) as stream:
        stream.wait("flux-fill", timeout=60)
    ready = stream.stats().ready_s
    assert sorted(order, key=ready.__getitem__) == order


def test_model_not_in_the_mirror_is_a_clear_error(models_url: str, s3: Any, tiny_models: Path, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/partial"
    mirror(ModelResolver(tiny_models), url, names=["lora-pano-text"], client=s3)
    with ModelStream(url, tmp_path / "models", ["moge", "lora-pano-text"], s3, chunk_bytes=CHUNK) as stream:
        with pytest.raises(ModelMissing) as info:
            stream.wait("moge", timeout=30)
        assert stream.wait("lora-pano-text", timeout=30).is_dir()
        with pytest.raises(ModelMissing, match="'zim' is not among the streamed models"):
            stream.wait("zim")
    assert f"s3://{BUCKET}/partial/Ruicheng/moge-vitl/" in info.value.message
    assert "'moge'" in info.value.message and "not in the mirror" in info.value.message
    assert not (tmp_path / "models/Ruicheng").exists()
    assert "moge" in stream.stats().failed and "moge" not in stream.stats().ready_s


def test_model_complete_locally_is_not_downloaded(models_url: str, s3: Any, tiny_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models / "Ruicheng", root / "Ruicheng")
    calls = get_object_calls(s3)
    with ModelStream(models_url, root, ["moge", "lora-pano-image"], s3, chunk_bytes=CHUNK) as stream:
        assert stream.wait("moge", timeout=30) == root / "Ruicheng/moge-vitl"
        stream.wait("lora-pano-image", timeout=30)
    stats = stream.stats()
    assert stats.skipped == ("moge",) and stats.model_bytes["moge"] == 0 and stats.ready_s["moge"] == 0.0
    assert stats.model_bytes["lora-pano-image"] > 0
    assert calls and not [call for call in calls if "moge" in call["Key"]]


def test_resolver_blocks_until_the_stream_delivers(models_url: str, s3: Any, tmp_path: Path) -> None:
    release = threading.Event()
    s3.meta.events.register("before-parameter-build.s3.GetObject", lambda **_: release.wait(30))
    root = tmp_path / "models"
    stream = ModelStream(models_url, root, ["moge"], s3, chunk_bytes=CHUNK)
    resolver = ModelResolver(root, stream=stream)
    resolved: list[Path] = []
    thread = threading.Thread(target=lambda: resolved.append(resolver.resolve("moge")), daemon=True)
    try:
        thread.start()  # resolve() starts the stream through wait()
        thread.join(0.5)
        assert thread.is_alive() and not resolved  # held: moge's GETs cannot finish
    finally:
        release.set()
    thread.join(30)
    assert resolved == [root / "Ruicheng/moge-vitl"]
    assert resolver.resolve("moge") == resolved[0]
    # A model the stream does not fetch keeps the resolver's own message.
    with pytest.raises(ModelMissing, match="worldgen models download zim"):
        resolver.resolve("zim")
    stream.close()


def test_object_deleted_mid_file_leaves_only_complete_files(
    models_url: str, s3: Any, tiny_models: Path, tmp_path: Path
) -> None:
    """moge's weights vanish from the bucket after their first part arrived: the model fails with
    the key and the error, and no partial file exists under its final (or any) name."""
    url = f"s3://{BUCKET}/vanishing"
    mirror(ModelResolver(tiny_models), url, names=["moge", "lora-pano-text"], client=s3)
    key = "vanishing/Ruicheng/moge-vitl/model.pt"
    admin = client_for(s3.meta.endpoint_url)

    root = tmp_path / "models"
    final_seen: list[bool] = []  # whether model.pt existed under its final name while parts arrived

    def delete_after_first_part(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("ContentRange", "").startswith("bytes 0-"):
            final_seen.append((root / "Ruicheng/moge-vitl/model.pt").exists())
            admin.delete_object(Bucket=BUCKET, Key=key)

    s3.meta.events.register("after-call.s3.GetObject", delete_after_first_part)
    with ModelStream(url, root, ["moge", "lora-pano-text"], s3, max_concurrency=1, chunk_bytes=CHUNK) as stream:
        with pytest.raises(ModelMissing) as info:
            stream.wait("moge", timeout=30)
        stream.wait("lora-pano-text", timeout=30)
    message = info.value.message
    assert f"s3://{BUCKET}/{key}" in message and "model 'moge'" in message
    assert "NoSuchKey" in message or "404" in message or "Not Found" in message
    assert final_seen == [False] and stream.stats().model_bytes["moge"] >= CHUNK  # part of it had arrived
    assert list(root.rglob("*.pt")) == [] and [p for p in root.rglob("*") if p.name.startswith(".")] == []
    lora = "tencent/HunyuanWorld-1/HunyuanWorld-PanoDiT-Text/lora.safetensors"
    assert files_under(root) == {lora: (tiny_models / lora).read_bytes()}


def test_incomplete_mirror_names_the_missing_keys(models_url: str, s3: Any, tiny_models: Path, tmp_path: Path) -> None:
    """Objects listed but a required file absent from the mirror: the model is not handed over."""
    url = f"s3://{BUCKET}/incomplete"
    mirror(ModelResolver(tiny_models), url, names=["grounding-dino"], client=s3)
    s3.delete_object(Bucket=BUCKET, Key="incomplete/IDEA-Research/grounding-dino-tiny/model.safetensors")
    with (
        ModelStream(url, tmp_path / "models", ["grounding-dino"], s3) as stream,
        pytest.raises(
            ModelMissing,
            match=r"s3://worldgen-stream-test/incomplete/IDEA-Research/grounding-dino-tiny/model\.safetensors",
        ),
    ):
        stream.wait("grounding-dino", timeout=30)


def test_close_stops_and_waiters_get_a_clear_error(models_url: str, s3: Any, tmp_path: Path) -> None:
    release = threading.Event()
    s3.meta.events.register("before-parameter-build.s3.GetObject", lambda **_: release.wait(30))
    root = tmp_path / "models"
    stream = ModelStream(models_url, root, ["grounding-dino"], s3, max_concurrency=2, chunk_bytes=CHUNK).start()
    stream.close(timeout=0.2)
    with pytest.raises(ModelMissing, match="closed before it arrived"):
        stream.wait("grounding-dino", timeout=5)
    release.set()
    stream.close()
    assert [p for p in root.rglob("*") if p.is_file()] == []
