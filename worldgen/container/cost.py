"""What a world cost: instance-seconds × the instance's on-demand price, split into its share of
the container's startup, its model loads and its compute.

The launcher says which instance and price (`WORLDGEN_INSTANCE_TYPE`, `WORLDGEN_PRICE_PER_HOUR`:
the SageMaker dispatcher sets both from `Settings.sagemaker_price_table`); elsewhere there is no
cost. A batch shares its container's startup (process start → first world) among its worlds. It
is the container's side only: SageMaker also bills the instance's provisioning and the image pull
before the process starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from worldgen.container.contract import ContainerPaths
from worldgen.outputs import read_json, write_json_atomic

INSTANCE_ENV, PRICE_ENV = "WORLDGEN_INSTANCE_TYPE", "WORLDGEN_PRICE_PER_HOUR"


def process_age_seconds() -> float:
    """Seconds since this process started (Linux /proc)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def world_cost(
    timings: Mapping[str, float], startup_s: float, batch_size: int, environ: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    env = os.environ if environ is None else environ
    instance, price = env.get(INSTANCE_ENV), env.get(PRICE_ENV)
    if not instance or not price:
        return None
    usd_per_hour = float(price)
    loads = float(timings.get("loading_models", 0.0))
    total = float(timings.get("total", 0.0))
    seconds = startup_s + total
    return {
        "instance_type": instance,
        "usd_per_hour": usd_per_hour,
        "batch_size": batch_size,
        "startup_s": round(startup_s, 2),
        "loads_s": round(loads, 2),
        "compute_s": round(max(0.0, total - loads), 2),
        "instance_seconds": round(seconds, 2),
        "usd": round(usd_per_hour * seconds / 3600, 5),
        "note": "the container's time only (a batch's startup shared among its worlds); SageMaker also "
        "bills the instance's provisioning and image pull",
    }


def add_cost(paths: ContainerPaths, startup_s: float, batch_size: int) -> dict[str, Any] | None:
    """Write the world's cost into its manifest.json (before the world reports success)."""
    manifest = read_json(paths.manifest_file)
    if manifest is None:
        return None
    manifest["cost"] = world_cost(manifest.get("timings_s") or {}, startup_s, batch_size)
    write_json_atomic(paths.manifest_file, manifest)
    return manifest["cost"]
