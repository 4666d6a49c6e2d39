"""moto's threaded server on 127.0.0.1 and helpers that play SageMaker's data plane.

moto's SageMaker accepts any request, keeps neither ProcessingResources nor Environment and marks
jobs Completed at once, so tests read the requests as sent (botocore hooks) and drive job states
through moto's backend objects. Everything else (S3, HTTP, our code) is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

ACCOUNT, REGION = "123456789012", "us-east-1"


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """moto's server with boto3 pointed at it through the environment and `bucket` created."""
    import boto3
    import pytest

    patch = pytest.MonkeyPatch()
    with moto_server() as endpoint:
        for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():  # fmt: skip
            patch.setenv(key, value)
        try:
            boto3.client("s3").create_bucket(Bucket=bucket)
            yield endpoint
        finally:
            patch.undo()


def processing_jobs() -> dict[str, Any]:
    from moto.backends import get_backend

    return get_backend("sagemaker")[ACCOUNT][REGION].processing_jobs


def set_state(name: str, status: str, **fields: str) -> None:
    job = processing_jobs()[name]
    job.processing_job_status = status
    for key, value in fields.items():
        setattr(job, key, value)


def record_requests(client: Any, operation: str) -> list[dict[str, Any]]:
    """Bodies of `operation` requests as botocore sends them over HTTP."""
    sent: list[dict[str, Any]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(json.loads(request.body))

    client.meta.events.register(f"before-send.sagemaker.{operation}", capture)
    return sent


def _download_prefix(s3: Any, uri: str, local: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    local.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = local / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


def run_like_sagemaker(request: dict[str, Any], root: Path) -> subprocess.CompletedProcess[str]:
    """Do what SageMaker does with a CreateProcessingJob request: copy the inputs (File mode) to
    their local paths under `root` (standing in for /opt/ml), run the image's entrypoint with the
    request's Environment, and upload the output folder to its S3 URI."""
    s3 = boto3.client("s3")

    def local(path: str) -> Path:
        return root / path.removeprefix("/opt/ml/")

    for item in request["ProcessingInputs"]:
        _download_prefix(s3, item["S3Input"]["S3Uri"], local(item["S3Input"]["LocalPath"]))
    # This machine has no GPU: say so, or the entrypoint refuses the job as it would on a GPU-less host.
    env = {**os.environ, **request["Environment"], "WORLDGEN_CONTAINER_ROOT": str(root), "WORLDGEN_DEVICE": "cpu"}
    command = [sys.executable, "-m", "worldgen", *request["AppSpecification"]["ContainerEntrypoint"][1:]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    for output in request["ProcessingOutputConfig"]["Outputs"]:
        folder = local(output["S3Output"]["LocalPath"])
        bucket, _, prefix = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, prefix + str(path.relative_to(folder)))
    return result
