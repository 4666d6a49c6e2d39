"""How fast `ModelStream` fetches a models mirror, and what that means on a SageMaker instance.

    python bench/model_fetch.py [--gb 2] [--settings 1:64,8:64,16:16] [--out fetch.json]

Writes `--gb` GB of random files in the models layout (a FLUX.1-dev folder with two transformer
and two T5 shards, the text LoRA, MoGe; sizes in the proportions of the prepared fp8 set),
mirrors it with `worldgen models mirror`'s code to a moto S3 server started in its own process,
then fetches it with `ModelStream` once per `concurrency:chunk-MiB` setting into an empty root,
in the first stage's order (LoRA, FLUX.1-dev, then MoGe). Prints bytes, seconds, MB/s and each
model's seconds to ready, and the client's CPU seconds per GB. moto is one Python process that
reads a whole object for every ranged GET (so small parts of big files are slow there, not on S3):
these numbers show the client's overhead, not S3's throughput. The estimate at the
end is arithmetic from the instances' documented "up to" network bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1 << 20
PREPARED_GB = 54.5  # the prepared (fp8 transformers) model set, bench/RESULTS.md
FIRST_STAGE_GB = 22.3  # FLUX.1-dev fp8 transformer 11.9 + T5-XXL 9.5 + CLIP 0.25 + VAE 0.17 + LoRA 0.48
INSTANCES = {"ml.g5.2xlarge": 10.0, "ml.g6.2xlarge": 10.0, "ml.g6e.2xlarge": 20.0}  # "up to" Gbps
ORDER = ["lora-pano-text", "flux-dev", "moge"]

# (model, path in its folder, GB in the real set); the weights are scaled to --gb.
WEIGHTS = [
    ("lora-pano-text", "lora.safetensors", 0.48),
    ("flux-dev", "transformer/diffusion_pytorch_model-00001-of-00002.safetensors", 5.95),
    ("flux-dev", "transformer/diffusion_pytorch_model-00002-of-00002.safetensors", 5.95),
    ("flux-dev", "text_encoder_2/model-00001-of-00002.safetensors", 4.99),
    ("flux-dev", "text_encoder_2/model-00002-of-00002.safetensors", 4.53),
    ("flux-dev", "text_encoder/model.safetensors", 0.25),
    ("flux-dev", "vae/diffusion_pytorch_model.safetensors", 0.17),
    ("moge", "model.pt", 1.26),
]
SMALL = [  # the FLUX folder's other required files (their content does not matter here)
    "model_index.json", "scheduler/scheduler_config.json", "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/config.json", "text_encoder/config.json",
    "text_encoder_2/config.json", "text_encoder_2/model.safetensors.index.json", "tokenizer/vocab.json",
    "tokenizer/merges.txt", "tokenizer_2/tokenizer.json",
]  # fmt: skip


def write_set(root: Path, total_gb: float) -> int:
    """Random weights (incompressible, like real ones) in the registry's layout; returns bytes."""
    from worldgen.models.registry import get_spec

    scale = total_gb / sum(gb for _, _, gb in WEIGHTS)
    written = 0
    for name, relative, gb in WEIGHTS:
        path = root / get_spec(name).relative_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        size = int(gb * scale * 1e9)
        with path.open("wb") as out:
            for start in range(0, size, 64 * MIB):
                out.write(os.urandom(min(64 * MIB, size - start)))
        written += size
    for relative in SMALL:
        path = root / get_spec("flux-dev").relative_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return written


def start_moto(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(data)}  # moto spools objects to temporary files
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, url
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("moto server did not start")


def client(endpoint: str, pool: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench", config=Config(max_pool_connections=max(10, pool)),
    )  # fmt: skip


def fetch(url: str, endpoint: str, target: Path, concurrency: int, chunk_mib: int) -> dict[str, Any]:
    from worldgen.models.streaming import ModelStream

    shutil.rmtree(target, ignore_errors=True)
    cpu = time.process_time()  # this process only: the client's cost, not moto's
    stream = ModelStream(
        url, target, ORDER, client(endpoint, concurrency), max_concurrency=concurrency, chunk_bytes=chunk_mib * MIB
    )
    with stream:
        for name in ORDER:
            stream.wait(name)
    stats = stream.stats()
    cpu = time.process_time() - cpu
    return {
        "concurrency": concurrency, "chunk_mib": chunk_mib, "bytes": stats.bytes, "files": stats.files,
        "seconds": round(stats.seconds, 2), "mb_s": round(stats.bytes / 1e6 / stats.seconds, 1),
        "ready_s": {name: round(s, 2) for name, s in stats.ready_s.items()},
        "first_stage_s": round(max(stats.ready_s[name] for name in ORDER[:2]), 2),
        "client_cpu_s": round(cpu, 2), "client_cpu_s_per_gb": round(cpu / (stats.bytes / 1e9), 2),
    }  # fmt: skip


def estimate(efficiency: float) -> list[dict[str, Any]]:
    """Seconds to fetch the prepared set and the first stage's share of it at the documented peak
    bandwidth times `efficiency` (S3 GETs over many connections rarely hold a NIC's full peak)."""
    rows = []
    for instance, gbps in INSTANCES.items():
        rate = gbps / 8 * efficiency  # GB/s
        rows.append({
            "instance": instance, "gbps": gbps, "efficiency": efficiency, "gb_s": round(rate, 3),
            "first_stage_s": round(FIRST_STAGE_GB / rate, 1), "all_s": round(PREPARED_GB / rate, 1),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--settings", default="1:64,8:64,16:16", help="concurrency:chunk-MiB, comma-separated")
    parser.add_argument("--efficiency", type=float, default=0.8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from worldgen.models.mirror import mirror
    from worldgen.models.resolver import ModelResolver

    with tempfile.TemporaryDirectory(prefix="wg-fetch-") as tmp:
        work = Path(tmp)
        (work / "moto").mkdir()
        started = time.perf_counter()
        total = write_set(work / "source", args.gb)
        print(f"wrote {total / 1e9:.2f} GB of random weights in {time.perf_counter() - started:.1f} s", flush=True)
        server, endpoint = start_moto(work / "moto")
        try:
            s3 = client(endpoint, 16)
            s3.create_bucket(Bucket="worldgen-bench")
            url = "s3://worldgen-bench/models"
            started = time.perf_counter()
            mirror(ModelResolver(work / "source"), url, names=ORDER, client=s3)
            print(f"mirrored to moto in {time.perf_counter() - started:.1f} s", flush=True)
            runs = []
            for setting in args.settings.split(","):
                concurrency, chunk = (int(v) for v in setting.split(":"))
                runs.append(fetch(url, endpoint, work / "target", concurrency, chunk))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(10)
    rows = estimate(args.efficiency) + estimate(1.0)
    print(f"\nEstimate for the prepared set ({PREPARED_GB} GB; first stage {FIRST_STAGE_GB} GB) from S3:")
    print(f"{'instance':<16} {'Gbps':>5} {'eff':>4} {'GB/s':>6} {'first stage s':>14} {'all s':>7}")
    for row in rows:
        print(
            f"{row['instance']:<16} {row['gbps']:>5.0f} {row['efficiency']:>4.1f} {row['gb_s']:>6.3f} "
            f"{row['first_stage_s']:>14.1f} {row['all_s']:>7.1f}"
        )
    if args.out:
        args.out.write_text(json.dumps({"gb": args.gb, "runs": runs, "estimate": rows}, indent=2))


if __name__ == "__main__":
    main()
