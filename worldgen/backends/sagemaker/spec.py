"""The CreateProcessingJob request for one attempt of one job, and its local validation.

botocore only checks required fields, types and minimums; the service's own limits (name
pattern, lengths, counts, ranges) are checked here so a bad configuration fails with a clear
message and no request is sent.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from worldgen.errors import WorldgenError
from worldgen.models.registry import MODELS
from worldgen.storage import keys

CONTAINER_ENTRYPOINT = ["worldgen", "container", "run"]
"""The image's ENTRYPOINT (docker/Dockerfile) and what the local worker runs."""
ROOT = "/opt/ml/processing"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_PATTERN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
IMAGE_PATTERN = re.compile(r"^[\w.\-]+(:\d+)?(/[\w.\-]+)+(:[\w.\-]{1,128}|@sha256:[0-9a-f]{64})?$")
INSTANCE_PATTERN = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
GPU_FAMILIES: dict[str, tuple[str, tuple[int, int]]] = {
    "p2": ("NVIDIA K80", (3, 7)),
    "p3": ("NVIDIA V100", (7, 0)),
    "g4dn": ("NVIDIA T4", (7, 5)),
    "g5": ("NVIDIA A10G", (8, 6)),
    "g6": ("NVIDIA L4", (8, 9)),
    "g6e": ("NVIDIA L40S", (8, 9)),
    "p5": ("NVIDIA H100", (9, 0)),
    "g7": ("NVIDIA RTX PRO 4500 Blackwell", (12, 0)),
    "g7e": ("NVIDIA RTX PRO 6000 Blackwell", (12, 0)),
}
"""Every GPU family in SageMaker Processing's instance list (tests/test_instance_types.py keeps it
complete): its GPU and CUDA compute capability. Which of them a job may use is decided against
IMAGE_CUDA_ARCHS, not by hand."""
IMAGE_TORCH_CUDA = "12.6"
"""The CUDA version of the image's PyTorch wheels (docker/Dockerfile; tests/test_docker.py keeps them equal)."""
IMAGE_CUDA_ARCHS = ((5, 0), (6, 0), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0))
"""Kernels in the image's PyTorch 2.14 CUDA 12.6 wheels (PyTorch's RELEASE.md CUDA support matrix;
docker/Dockerfile pins the cu126 index). No Blackwell: that needs the CUDA 12.8+ builds."""
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,255}$")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
MAX_INPUTS, MAX_ENV, MAX_TAGS = 10, 100, 50
OUTPUT_GB, MARGIN_GB, MARGIN_FACTOR = 4.0, 10.0, 1.2


class InvalidProcessingJob(WorldgenError):
    code = "invalid_sagemaker_request"


def job_name(job_id: str, attempt: int) -> str:
    """Unique per attempt, and the same on a retry of the same attempt (SageMaker never reuses names)."""
    return f"wg-{job_id[:32]}-{attempt}"


def raw_models_gb() -> float:
    return sum(spec.size_gb for spec in MODELS.values())


def volume_size_gb(models_gb: float) -> int:
    """Room for the models (the container streams them onto the volume), the outputs, and a margin."""
    return math.ceil((models_gb + OUTPUT_GB) * MARGIN_FACTOR + MARGIN_GB)


@dataclass(frozen=True)
class JobSettings:
    role_arn: str
    image_uri: str
    instance_type: str
    max_runtime_seconds: int
    volume_gb: int
    models_url: str
    storage_bucket: str
    storage_prefix: str
    environment: dict[str, str]


def build_request(
    settings: JobSettings, job_id: str, attempt: int, upload_keys: dict[str, str], batch_size: int = 1
) -> dict[str, Any]:
    """The processing job of a batch of `batch_size` worlds, named after its first world's
    attempt (`job_id`, `attempt`): the batch's worlds are listed in its request channel
    (worlds.json, written by the dispatcher). `upload_keys`: upload id → its storage key prefix
    (`uploads/{id}/`), for every world of the batch."""
    name = job_name(job_id, attempt)
    bucket = settings.storage_bucket
    inputs: list[dict[str, Any]] = [
        _input(
            "request",
            f"s3://{bucket}/{settings.storage_prefix}{keys.run_request_prefix(name)}",
            f"{ROOT}/input/request",
        ),
    ]
    for upload_id, key_prefix in sorted(upload_keys.items()):
        inputs.append(
            _input(
                f"upload-{upload_id[:40]}",
                f"s3://{bucket}/{settings.storage_prefix}{key_prefix}",
                f"{ROOT}/input/uploads/{upload_id}",
            )
        )
    request = {
        "ProcessingJobName": name,
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": settings.instance_type,
                "VolumeSizeInGB": settings.volume_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "AppSpecification": {"ImageUri": settings.image_uri, "ContainerEntrypoint": list(CONTAINER_ENTRYPOINT)},
        "RoleArn": settings.role_arn,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "world",
                    "S3Output": {
                        "S3Uri": f"s3://{bucket}/{settings.storage_prefix}{keys.run_output_prefix(name)}",
                        "LocalPath": f"{ROOT}/output/world",
                        "S3UploadMode": "Continuous",
                    },
                }
            ]
        },
        "Environment": {
            **settings.environment,
            "WORLDGEN_JOB_ID": job_id,
            "WORLDGEN_ATTEMPT": str(attempt),
            "WORLDGEN_BATCH_SIZE": str(batch_size),
            "WORLDGEN_CANCEL_URL": f"s3://{bucket}/{settings.storage_prefix}{keys.run_cancel_prefix(name)}",
            # The container streams its models from here itself (models/streaming.py): parallel
            # ranged reads, the first stage starting while the rest arrive; no File-mode copy.
            "WORLDGEN_MODELS_URL": settings.models_url.rstrip("/") + "/",
        },
        "Tags": [
            {"Key": "worldgen:job-id", "Value": job_id},
            {"Key": "worldgen:attempt", "Value": str(attempt)},
            {"Key": "worldgen:batch-size", "Value": str(batch_size)},
        ],
    }
    validate_request(request)
    return request


def _input(name: str, uri: str, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


@functools.cache
def processing_instance_types() -> frozenset[str]:
    """SageMaker Processing's instance types, from the installed botocore's service model: AWS's
    own list, which moves with botocore instead of with a hand-kept one."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProcessingInstanceType").enum)


def family_runs_in_image(family: str) -> bool:
    """A cubin built for X.y runs on a GPU of capability X.z with z ≥ y (CUDA binary compatibility)."""
    capability = GPU_FAMILIES[family][1]
    return any(arch[0] == capability[0] and arch[1] <= capability[1] for arch in IMAGE_CUDA_ARCHS)


def gpu_instance_types() -> frozenset[str]:
    """The instance types a job may ask for: offered by Processing, with a GPU the image can drive."""
    return frozenset(
        name
        for name in processing_instance_types()
        if name.split(".")[1] in GPU_FAMILIES and family_runs_in_image(name.split(".")[1])
    )


def instance_type_problem(instance: str) -> str | None:
    if not INSTANCE_PATTERN.match(instance):
        return f"InstanceType {instance!r} is not a SageMaker instance type (ml.<family>.<size>)"
    if instance not in processing_instance_types():
        import botocore

        return (
            f"InstanceType {instance!r} is not offered by SageMaker Processing "
            f"(ProcessingInstanceType of botocore {botocore.__version__})"
        )
    family = instance.split(".")[1]
    if family not in GPU_FAMILIES:
        return f"InstanceType {instance!r} has no GPU; use e.g. ml.g5.2xlarge, ml.g6.2xlarge, ml.g6e.2xlarge"
    if not family_runs_in_image(family):
        gpu, (major, minor) = GPU_FAMILIES[family]
        archs = ", ".join(f"sm_{a}{b}" for a, b in IMAGE_CUDA_ARCHS)
        return (
            f"InstanceType {instance!r} has an {gpu} (compute capability {major}.{minor}); the image's PyTorch "
            f"build (CUDA {IMAGE_TORCH_CUDA}: {archs}) has no kernels for it; use ml.g5, ml.g6, ml.g6e or ml.p5"
        )
    return None


def validate_request(request: dict[str, Any]) -> None:
    """The service's limits for CreateProcessingJob; raises InvalidProcessingJob listing every problem."""
    problems = []
    name = request["ProcessingJobName"]
    if not NAME_PATTERN.match(name):
        problems.append(f"ProcessingJobName {name!r} must be 1-63 characters of [a-zA-Z0-9-], no leading hyphen")
    if not ROLE_PATTERN.match(request["RoleArn"] or ""):
        problems.append(f"RoleArn {request['RoleArn']!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    image = request["AppSpecification"]["ImageUri"] or ""
    if not IMAGE_PATTERN.match(image) or len(image) > 255:
        problems.append(f"ImageUri {image!r} is not an image URI (e.g. <account>.dkr.ecr.<region>.amazonaws.com/x:tag)")
    cluster = request["ProcessingResources"]["ClusterConfig"]
    problem = instance_type_problem(cluster["InstanceType"])
    if problem:
        problems.append(problem)
    if not 1 <= cluster["VolumeSizeInGB"] <= 16384:
        problems.append(f"VolumeSizeInGB {cluster['VolumeSizeInGB']} must be 1..16384")
    runtime = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    if not 1 <= runtime <= 432000:
        problems.append(f"MaxRuntimeInSeconds {runtime} must be 1..432000")
    inputs = request["ProcessingInputs"]
    if len(inputs) > MAX_INPUTS:
        problems.append(f"{len(inputs)} ProcessingInputs; at most {MAX_INPUTS}")
    for item in inputs:
        uri = item["S3Input"]["S3Uri"]
        if not S3_URI.match(uri) or len(uri) > 1024:
            problems.append(f"input {item['InputName']!r}: {uri!r} is not an s3:// URI")
        if not item["S3Input"]["LocalPath"].startswith(f"{ROOT}/"):
            problems.append(f"input {item['InputName']!r}: LocalPath must be under {ROOT}/")
    environment = request["Environment"]
    if len(environment) > MAX_ENV:
        problems.append(f"{len(environment)} Environment entries; at most {MAX_ENV}")
    for key, value in environment.items():
        if not ENV_KEY.match(key):
            problems.append(f"Environment key {key!r} must match [a-zA-Z_][a-zA-Z0-9_]* (≤ 256)")
        if len(value) > 256:
            problems.append(f"Environment value of {key} is {len(value)} characters; at most 256")
    if len(request["Tags"]) > MAX_TAGS:
        problems.append(f"{len(request['Tags'])} tags; at most {MAX_TAGS}")
    if problems:
        raise InvalidProcessingJob("; ".join(problems), details={"problems": problems})
