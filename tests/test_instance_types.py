"""Which instance types a job may ask for: SageMaker Processing's own list (botocore's service
model) narrowed to the GPU families the image's PyTorch build has kernels for."""

from __future__ import annotations

import re

import botocore
import botocore.session
import pytest

from worldgen.backends.sagemaker.spec import (
    GPU_FAMILIES,
    IMAGE_CUDA_ARCHS,
    InvalidProcessingJob,
    JobSettings,
    build_request,
    family_runs_in_image,
    gpu_instance_types,
    processing_instance_types,
)

SETTINGS = JobSettings(
    role_arn="arn:aws:iam::123456789012:role/worldgen-job",
    image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/worldgen:0.1.0",
    instance_type="ml.g5.2xlarge",
    max_runtime_seconds=3600,
    volume_gb=100,
    models_url="s3://models-bucket/models/prepared",
    storage_bucket="data-bucket",
    storage_prefix="wg/",
    environment={},
)


def _request(instance_type: str) -> dict:
    return build_request(SETTINGS.__class__(**{**SETTINGS.__dict__, "instance_type": instance_type}), "a" * 32, 1, {})


def _enum() -> list[str]:
    return botocore.session.get_session().get_service_model("sagemaker").shape_for("ProcessingInstanceType").enum


def test_the_list_is_botocores_processing_enum() -> None:
    assert processing_instance_types() == frozenset(_enum())
    assert "ml.g5.2xlarge" in processing_instance_types()


def test_every_gpu_family_we_know_is_offered_by_processing() -> None:
    offered = {name.split(".")[1] for name in _enum()}
    assert set(GPU_FAMILIES) <= offered, set(GPU_FAMILIES) - offered
    assert "p4d" not in offered and "p4de" not in offered


def test_every_gpu_family_processing_offers_is_classified() -> None:
    """EC2's accelerated families are named g* (graphics) and p* (compute); every one in the enum
    must be in GPU_FAMILIES, so a botocore upgrade that adds one fails here rather than being
    rejected as 'no GPU'. The rest are CPU families (t, m, c, r)."""
    families = {name.split(".")[1] for name in _enum()}
    assert {f for f in families if re.match(r"^[gp]\d", f)} == set(GPU_FAMILIES)
    assert all(re.match(r"^[tmcr]\d", f) for f in families - set(GPU_FAMILIES)), families - set(GPU_FAMILIES)


def test_accepted_types_are_the_runnable_gpu_types_of_the_enum() -> None:
    accepted = gpu_instance_types()
    assert accepted <= processing_instance_types()
    assert {"ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g6e.2xlarge", "ml.p5.4xlarge"} <= accepted
    assert not any(name.split(".")[1] in ("g7", "g7e", "p2") for name in accepted)
    assert not any(name.startswith(("ml.m5.", "ml.c5.", "ml.t3.")) for name in accepted)
    for name in sorted(accepted):
        _request(name)  # no InvalidProcessingJob


def test_compute_capability_rule() -> None:
    """A cubin for X.y runs on X.z when z ≥ y: sm_86 kernels serve the L4/L40S (8.9)."""
    assert (8, 6) in IMAGE_CUDA_ARCHS and (8, 9) not in IMAGE_CUDA_ARCHS
    assert family_runs_in_image("g6") and family_runs_in_image("g6e") and family_runs_in_image("g5")
    assert not family_runs_in_image("g7e") and not family_runs_in_image("p2")


@pytest.mark.parametrize(
    ("instance_type", "problem"),
    [
        ("ml.p4d.24xlarge", "not offered by SageMaker Processing"),
        ("ml.g5.3xlarge", "not offered by SageMaker Processing"),
        ("ml.m5.xlarge", "has no GPU"),
        ("ml.c7i.2xlarge", "has no GPU"),
        ("ml.g7e.2xlarge", r"compute capability 12\.0"),
        ("ml.g7.2xlarge", "no kernels for it"),
        ("ml.p2.xlarge", r"compute capability 3\.7"),
        ("g5.2xlarge", "not a SageMaker instance type"),
    ],
)
def test_rejections_say_why(instance_type: str, problem: str) -> None:
    with pytest.raises(InvalidProcessingJob, match=problem):
        _request(instance_type)


def test_offered_but_unsupported_names_the_botocore_version() -> None:
    with pytest.raises(InvalidProcessingJob, match=re.escape(botocore.__version__)):
        _request("ml.p4d.24xlarge")
