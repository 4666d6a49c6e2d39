"""`worldgen models mirror`: copy a models root to S3 in the same layout, for SageMaker jobs.

A marker object `worldgen-models.json` records what was copied and its total size, which the
SageMaker launcher reads to size each job's volume.
"""

from __future__ import annotations

import json
from typing import Any

from worldgen.models.prepared import MARKER as PREPARED_MARKER
from worldgen.models.registry import MODELS
from worldgen.models.resolver import ModelResolver
from worldgen.storage.s3 import MULTIPART_CHUNK, MULTIPART_THRESHOLD, parse_s3_url, s3_client

SET_MARKER = "worldgen-models.json"


def mirror(resolver: ModelResolver, url: str, names: list[str] | None = None, client=None) -> dict[str, Any]:
    """Upload each model's folder (fetching it first if the resolver may download). Files already
    in S3 with the same size are skipped, so a mirror can be resumed."""
    from boto3.s3.transfer import TransferConfig

    client = client or s3_client()
    bucket, prefix = parse_s3_url(url)
    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK)
    sizes: dict[str, int] = {}
    for name in names or list(MODELS):
        folder = resolver.resolve(name)
        total = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = prefix + str(path.relative_to(resolver.root))
            size = path.stat().st_size
            total += size
            if _remote_size(client, bucket, key) != size:
                client.upload_file(str(path), bucket, key, Config=config)
        sizes[name] = total
    prepared = (resolver.folder("flux-dev") / PREPARED_MARKER).is_file()
    marker = {"models": sizes, "total_bytes": sum(sizes.values()), "prepared": prepared}
    client.put_object(
        Bucket=bucket,
        Key=prefix + SET_MARKER,
        Body=json.dumps(marker, indent=2).encode(),
        ContentType="application/json",
    )
    return marker


def _remote_size(client, bucket: str, key: str) -> int | None:
    from botocore.exceptions import ClientError

    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError:
        return None


def models_gb(url: str, client=None) -> float | None:
    """Total size recorded by `mirror` at `url`, in GB (None if there is no marker)."""
    from botocore.exceptions import ClientError

    client = client or s3_client()
    bucket, prefix = parse_s3_url(url)
    try:
        body = client.get_object(Bucket=bucket, Key=prefix + SET_MARKER)["Body"].read()
    except ClientError:
        return None
    return json.loads(body)["total_bytes"] / 1e9
