"""docs/iam/*.json against the code: every AWS call the code makes, on every storage prefix it
builds, and everything SageMaker does for the CreateProcessingJob request we send, is allowed by
the policy of the principal that does it; nothing more than AWS requires is `*`.

No IAM here, so a small evaluator of the policy language's Allow side stands in for it (exact and
wildcard matching of actions and resources, StringEquals/StringLike/ArnLike conditions). The
policies use no Deny, NotAction or NotResource, which a test below keeps true.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from worldgen.backends.sagemaker.spec import JobSettings, build_request, job_name
from worldgen.jobs.store import new_id
from worldgen.models.mirror import SET_MARKER
from worldgen.pipeline_inputs import SOURCE_WORLD_INPUT

ROOT = Path(__file__).resolve().parents[1]
IAM = ROOT / "docs" / "iam"
DEPLOY = ROOT / "docs" / "deploy.md"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
API, PUBLISHER = "api-policy.json", "models-publisher-policy.json"
PUBLISHER_CODE = {("worldgen/models/mirror.py", "mirror"), ("worldgen/models/mirror.py", "_remote_size")}
"""The calls `worldgen models mirror` / `prepare --out s3://` make, from an operator's machine."""
CONTAINER_FILES = {"worldgen/models/streaming.py", "worldgen/container/batch.py"}
"""Files whose calls run inside the processing job, as its execution role: the models streamed
from S3, the batch's cancel markers listed."""
WILDCARD_ONLY = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sagemaker:ListProcessingJobs"}
"""Actions with no resource-level permissions (AWS's Service Authorization Reference): `*` or nothing."""

# IAM actions behind each client method the code may call. boto3's managed transfers (upload_file,
# copy) use multipart uploads above a threshold: PutObject covers their parts, AbortMultipartUpload
# their clean-up; HeadObject needs GetObject; a presigned URL is used with the signer's rights.
ACTIONS = {
    "get_object": {"s3:GetObject"},
    "head_object": {"s3:GetObject"},
    "put_object": {"s3:PutObject"},
    "upload_file": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "upload_fileobj": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "copy": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
    "copy_object": {"s3:GetObject", "s3:PutObject"},
    "create_multipart_upload": {"s3:PutObject"},
    "upload_part": {"s3:PutObject"},
    "complete_multipart_upload": {"s3:PutObject"},
    "abort_multipart_upload": {"s3:AbortMultipartUpload"},
    "list_objects_v2": {"s3:ListBucket"},
    "delete_objects": {"s3:DeleteObject"},
    "delete_object": {"s3:DeleteObject"},
    "create_processing_job": {"sagemaker:CreateProcessingJob", "sagemaker:AddTags", "iam:PassRole"},
    "describe_processing_job": {"sagemaker:DescribeProcessingJob"},
    "list_processing_jobs": {"sagemaker:ListProcessingJobs"},
    "stop_processing_job": {"sagemaker:StopProcessingJob"},
}
MANAGED = {"upload_file", "upload_fileobj", "download_file", "download_fileobj", "copy"}

VALUES = [
    {"Bucket": "data-bucket", "Prefix": "wg/", "ModelsBucket": "models-bucket", "ModelsPrefix": "models/prepared/"},
    {"Bucket": "one-bucket", "Prefix": "", "ModelsBucket": "one-bucket", "ModelsPrefix": "models/"},
]
COMMON = {"Account": "123456789012", "Region": "eu-west-1", "Repository": "worldgen"}


# ---- a tiny evaluator -------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = context[key] in _list(wanted)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(_pattern(w).fullmatch(context[key]) for w in _list(wanted))
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
            if not ok:
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(_pattern(a.lower()).fullmatch(action.lower()) for a in _list(statement["Action"])):
            continue
        if not any(_pattern(r).fullmatch(resource) for r in _list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            return True
    return False


def load(name: str, values: dict[str, str]) -> dict:
    filled = {**COMMON, **values, "ExecutionRoleArn": f"arn:aws:iam::{COMMON['Account']}:role/worldgen-job"}
    return json.loads(PLACEHOLDER.sub(lambda m: filled[m.group(1)], (IAM / name).read_text()))


# ---- what the code does ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    function: str


def _operations(service: str) -> set[str]:
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name) for name in model.operation_names}


def code_calls() -> list[Call]:
    """Every boto3 client call in worldgen/: methods of a `client` named after an S3 or SageMaker
    operation, boto3's managed transfers, and the operations named in get_paginator and
    generate_presigned_url."""
    known = _operations("s3") | _operations("sagemaker") | MANAGED
    calls = []
    for path in sorted((ROOT / "worldgen").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]:
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name = node.func.attr
                if "client" not in ast.unparse(node.func.value):
                    continue  # boto3 clients are `client` / `self.client` throughout worldgen/
                if name in ("get_paginator", "generate_presigned_url") and node.args:
                    name = node.args[0].value if isinstance(node.args[0], ast.Constant) else name
                elif name == "copy" and len(node.args) < 3:
                    continue  # dict.copy() and the like; S3's managed copy takes (source, bucket, key)
                if name in known:
                    inner = next((n.name for n in ast.walk(function) if isinstance(n, ast.FunctionDef)
                                  and node in ast.walk(n) and n is not function), function.name)  # fmt: skip
                    calls.append(Call(name, str(path.relative_to(ROOT)), inner))
    return calls


def storage_prefixes() -> set[str]:
    """Top-level storage key prefixes the code builds: constants like "worlds/" and f-strings that
    start with one ("worlds/{id}/..."), wherever they are in worldgen/."""
    found = set()
    for path in (ROOT / "worldgen").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                head = node.value.value
            elif isinstance(node, ast.JoinedStr) and len(node.values) > 1 and isinstance(node.values[0], ast.Constant):
                head = node.values[0].value
            else:
                continue
            if isinstance(head, str) and re.fullmatch(r"[a-z][a-z0-9_-]*/", head):
                found.add(head)
    return found


# ---- the tests ---------------------------------------------------------------------------------


def test_policies_are_documented_json_with_known_placeholders() -> None:
    names = sorted(p.name for p in IAM.glob("*.json"))
    assert names == sorted(["execution-role-policy.json", "execution-role-trust.json", API, PUBLISHER])
    deploy = DEPLOY.read_text()
    for name in names:
        text = (IAM / name).read_text()
        policy = json.loads(text)
        assert policy["Version"] == "2012-10-17"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        assert f"iam/{name}" in deploy, f"docs/deploy.md links {name}"
        for placeholder in set(PLACEHOLDER.findall(text)):
            assert f"`${{{placeholder}}}`" in deploy, f"docs/deploy.md explains ${{{placeholder}}}"


def test_the_scan_finds_the_calls_we_know_of() -> None:
    methods = {call.method for call in code_calls()}
    assert {
        "create_processing_job",
        "describe_processing_job",
        "list_processing_jobs",
        "stop_processing_job",
    } <= methods
    assert {
        "get_object",
        "head_object",
        "upload_file",
        "put_object",
        "copy",
        "list_objects_v2",
        "delete_objects",
    } <= methods
    assert storage_prefixes() == {"runs/", "uploads/", "worlds/"}


def test_every_aws_call_in_the_code_is_mapped() -> None:
    """A new boto3 call fails here until ACTIONS and the policies cover it."""
    unknown = {(c.method, c.path) for c in code_calls() if c.method not in ACTIONS}
    assert not unknown, unknown


@pytest.mark.parametrize("values", VALUES, ids=["own-models-bucket", "one-bucket-no-prefix"])
def test_api_policy_allows_every_call_the_api_makes(values: dict[str, str]) -> None:
    policy = load(API, values)
    bucket, prefix = values["Bucket"], values["Prefix"]
    name = job_name(new_id(), 1)
    job_arn = f"arn:aws:sagemaker:{COMMON['Region']}:{COMMON['Account']}:processing-job/{name}"
    role = f"arn:aws:iam::{COMMON['Account']}:role/worldgen-job"
    needed = set().union(
        *(ACTIONS[c.method] for c in code_calls() if (c.path, c.function) not in PUBLISHER_CODE
          and c.path not in CONTAINER_FILES)
    )  # fmt: skip
    for action in sorted(needed):
        service, _ = action.split(":")
        if action in WILDCARD_ONLY:
            assert allowed(policy, action, "*"), action
        elif action == "iam:PassRole":
            assert allowed(policy, action, role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
            assert not allowed(policy, action, role, {"iam:PassedToService": "ec2.amazonaws.com"})
            assert not allowed(
                policy,
                action,
                role.replace("worldgen-job", "admin"),
                {"iam:PassedToService": "sagemaker.amazonaws.com"},
            )
        elif service == "sagemaker":
            assert allowed(policy, action, job_arn), action
            assert not allowed(policy, action, job_arn.replace(f"/{name}", "/someone-elses-job")), action
        elif action == "s3:ListBucket":
            for key_prefix in storage_prefixes():
                assert allowed(policy, action, f"arn:aws:s3:::{bucket}", {"s3:prefix": f"{prefix}{key_prefix}x/"})
            # S3 answers 404 for a missing key only to a caller that may list the bucket; without
            # it, 403, and the poller would take a not-yet-written progress.json for an error.
            assert allowed(policy, action, f"arn:aws:s3:::{bucket}")
        else:
            for key_prefix in storage_prefixes():
                assert allowed(policy, action, f"arn:aws:s3:::{bucket}/{prefix}{key_prefix}id/file.glb"), action
            if prefix:
                assert not allowed(policy, action, f"arn:aws:s3:::{bucket}/elsewhere/file"), action
    models = f"arn:aws:s3:::{values['ModelsBucket']}/{values['ModelsPrefix']}"
    assert allowed(policy, "s3:GetObject", models + SET_MARKER)  # the volume size comes from it
    assert not allowed(policy, "s3:GetObject", models + "flux-dev/transformer.safetensors")
    assert not allowed(policy, "s3:PutObject", models + SET_MARKER)


@pytest.mark.parametrize("values", VALUES, ids=["own-models-bucket", "one-bucket-no-prefix"])
def test_publisher_policy_allows_the_mirror(values: dict[str, str]) -> None:
    policy = load(PUBLISHER, values)
    models = f"arn:aws:s3:::{values['ModelsBucket']}/{values['ModelsPrefix']}"
    needed = set().union(*(ACTIONS[c.method] for c in code_calls() if (c.path, c.function) in PUBLISHER_CODE))
    assert needed >= {"s3:PutObject", "s3:GetObject"}
    for action in needed:
        assert allowed(policy, action, models + "flux-dev/transformer/model.safetensors"), action
        assert allowed(policy, action, models + SET_MARKER), action
        assert not allowed(policy, action, f"arn:aws:s3:::{values['Bucket']}/{values['Prefix']}worlds/x/y"), action


@pytest.mark.parametrize("values", VALUES, ids=["own-models-bucket", "one-bucket-no-prefix"])
def test_execution_role_allows_what_sagemaker_does_for_our_request(values: dict[str, str]) -> None:
    """SageMaker, as the job role, lists and downloads every input channel, uploads the output
    channel, pulls the image and writes logs and metrics. The request is the one the code builds,
    with an upload and a source world (re-layering reads worlds/{id}/panorama.png)."""
    policy = load("execution-role-policy.json", values)
    bucket, prefix = values["Bucket"], values["Prefix"]
    uploads, worlds = sorted(p for p in storage_prefixes() if p in ("uploads/", "worlds/"))
    settings = JobSettings(
        role_arn=f"arn:aws:iam::{COMMON['Account']}:role/worldgen-job",
        image_uri=f"{COMMON['Account']}.dkr.ecr.{COMMON['Region']}.amazonaws.com/{COMMON['Repository']}:0.1.0",
        instance_type="ml.g5.2xlarge", max_runtime_seconds=3600, volume_gb=100,
        models_url=f"s3://{values['ModelsBucket']}/{values['ModelsPrefix']}", storage_bucket=bucket,
        storage_prefix=prefix, environment={},
    )  # fmt: skip
    upload_id, world_id = new_id(), new_id()
    request = build_request(
        settings,
        new_id(),
        1,
        {upload_id: f"{uploads}{upload_id}/", SOURCE_WORLD_INPUT: f"{worlds}{world_id}/panorama.png"},
    )
    inputs = [item["S3Input"]["S3Uri"] for item in request["ProcessingInputs"]]
    assert len(inputs) == 3  # request, the upload, the source world (the container streams the models)
    # The stream's ranged GETs go through s3transfer's TransferManager, which the call scan does not see.
    container = set().union(*(ACTIONS[c.method] for c in code_calls() if c.path in CONTAINER_FILES)) | {"s3:GetObject"}
    assert "s3:ListBucket" in container
    models_bucket, _, models_prefix = request["Environment"]["WORLDGEN_MODELS_URL"].removeprefix("s3://").partition("/")
    cancel_bucket, _, cancel_prefix = request["Environment"]["WORLDGEN_CANCEL_URL"].removeprefix("s3://").partition("/")
    for action in container:
        if action == "s3:ListBucket":
            assert allowed(policy, action, f"arn:aws:s3:::{models_bucket}", {"s3:prefix": models_prefix})
            assert allowed(policy, action, f"arn:aws:s3:::{cancel_bucket}", {"s3:prefix": cancel_prefix})
        else:
            assert allowed(policy, action, f"arn:aws:s3:::{models_bucket}/{models_prefix}flux-dev/x.safetensors")
    for uri in inputs:
        bucket_name, _, key = uri.removeprefix("s3://").partition("/")
        assert allowed(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket_name}", {"s3:prefix": key}), uri
        obj = key + "file.bin" if key.endswith("/") else key
        assert allowed(policy, "s3:GetObject", f"arn:aws:s3:::{bucket_name}/{obj}"), uri
        assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::{bucket_name}/{obj}"), uri
    for output in request["ProcessingOutputConfig"]["Outputs"]:
        bucket_name, _, key = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
        for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
            assert allowed(policy, action, f"arn:aws:s3:::{bucket_name}/{key}manifest.json"), action
    # Only what the job needs: no other world's files, no writes outside its run's output.
    assert not allowed(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}{worlds}{world_id}/world.glb")
    assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::{bucket}/{prefix}{worlds}{world_id}/panorama.png")
    assert not allowed(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}runs/x/world/manifest.json")
    repository = settings.image_uri.split("/", 1)[1].split(":")[0]
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
        assert allowed(policy, action, f"arn:aws:ecr:{COMMON['Region']}:{COMMON['Account']}:repository/{repository}")
        assert not allowed(policy, action, f"arn:aws:ecr:{COMMON['Region']}:{COMMON['Account']}:repository/other")
    assert allowed(policy, "ecr:GetAuthorizationToken", "*")
    group = f"arn:aws:logs:{COMMON['Region']}:{COMMON['Account']}:log-group:/aws/sagemaker/ProcessingJobs"
    stream = f"{group}:log-stream:{request['ProcessingJobName']}/algo-1-1700000000"
    for action, resource in [("logs:CreateLogGroup", group), ("logs:DescribeLogStreams", group),
                             ("logs:CreateLogStream", stream), ("logs:PutLogEvents", stream)]:  # fmt: skip
        assert allowed(policy, action, resource), action
    namespace = {"cloudwatch:namespace": "/aws/sagemaker/ProcessingJobs"}
    assert allowed(policy, "cloudwatch:PutMetricData", "*", namespace)
    assert not allowed(policy, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Other"})


def test_trust_policy_lets_only_our_processing_jobs_assume_the_role() -> None:
    policy = load("execution-role-trust.json", VALUES[0])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"} and statement["Action"] == "sts:AssumeRole"
    ours = f"arn:aws:sagemaker:{COMMON['Region']}:{COMMON['Account']}:processing-job/{job_name(new_id(), 1)}"
    context = {"aws:SourceAccount": COMMON["Account"], "aws:SourceArn": ours}
    assert _condition_holds(statement["Condition"], context)
    assert not _condition_holds(statement["Condition"], {**context, "aws:SourceAccount": "999999999999"})
    assert not _condition_holds(statement["Condition"], {**context, "aws:SourceArn": ours.replace("/wg-", "/x-")})


def test_nothing_is_a_wildcard_unless_aws_requires_it() -> None:
    for path in IAM.glob("*.json"):
        for statement in json.loads(path.read_text())["Statement"]:
            actions = set(_list(statement.get("Action", [])))
            assert not any("*" in action for action in actions), (path.name, actions)
            if "*" in _list(statement.get("Resource", [])):
                assert actions <= WILDCARD_ONLY, (path.name, actions)
