"""The CreateProcessingJob request for one attempt of one job, and its local validation.

botocore only checks required fields, types and minimums; the service's own limits (name
pattern, lengths, counts, ranges) are checked here so a bad configuration fails with a clear
message and no request is sent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from worldgen.errors import WorldgenError
from worldgen.models.registry import MODELS

CONTAINER_ENTRYPOINT = ["worldgen", "container", "run"]
"""The image's ENTRYPOINT (docker/Dockerfile) and what the local worker runs."""
ROOT = "/opt/ml/processing"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_PATTERN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
IMAGE_PATTERN = re.compile(r"^[\w.\-]+(:\d+)?(/[\w.\-]+)+(:[\w.\-]{1,128}|@sha256:[0-9a-f]{64})?$")
INSTANCE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
GPU_FAMILIES = ("ml.g4dn.", "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p3.", "ml.p4d.", "ml.p4de.", "ml.p5.")
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
    """Room for the models (File mode copies them in), one world's outputs, and a margin."""
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


def run_prefix(settings: JobSettings, name: str) -> str:
    return f"{settings.storage_prefix}runs/{name}/"


def build_request(settings: JobSettings, job_id: str, attempt: int, upload_keys: dict[str, str]) -> dict[str, Any]:
    """`upload_keys`: upload id → its storage key prefix (`uploads/{id}/`)."""
    name = job_name(job_id, attempt)
    bucket = settings.storage_bucket
    prefix = run_prefix(settings, name)
    inputs: list[dict[str, Any]] = [
        _input("request", f"s3://{bucket}/{prefix}request/", f"{ROOT}/input/request"),
        _input("models", settings.models_url.rstrip("/") + "/", f"{ROOT}/input/models"),
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
                        "S3Uri": f"s3://{bucket}/{prefix}world/",
                        "LocalPath": f"{ROOT}/output/world",
                        "S3UploadMode": "Continuous",
                    },
                }
            ]
        },
        "Environment": {**settings.environment, "WORLDGEN_JOB_ID": job_id, "WORLDGEN_ATTEMPT": str(attempt)},
        "Tags": [{"Key": "worldgen:job-id", "Value": job_id}, {"Key": "worldgen:attempt", "Value": str(attempt)}],
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
    instance = cluster["InstanceType"]
    if not INSTANCE_PATTERN.match(instance):
        problems.append(f"InstanceType {instance!r} is not a SageMaker instance type (ml.<family>.<size>)")
    elif not instance.startswith(GPU_FAMILIES):
        problems.append(f"InstanceType {instance!r} has no GPU; use e.g. ml.g5.2xlarge, ml.g6.2xlarge, ml.g6e.2xlarge")
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
