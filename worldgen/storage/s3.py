"""Artifacts in S3 (or an S3-compatible store) through boto3.

Objects carry their sha256 in user metadata (`x-amz-meta-sha256`), computed before the upload so
multipart uploads (boto3's managed transfer, for large files) carry it too. Downloads are handed
to clients as expiring presigned URLs. The endpoint comes from boto3's standard environment
(`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`), so MinIO or moto work unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from worldgen.storage.base import ArtifactInfo, content_type_for, validate_key

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 64 * 1024 * 1024


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix → (bucket, 'prefix/' or '')."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}))


class S3ArtifactStore:
    def __init__(self, url: str, client=None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client or s3_client()

    def object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ArtifactInfo:
        from boto3.s3.transfer import TransferConfig

        digest = hashlib.sha256()
        with Path(path).open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
        info = ArtifactInfo(key, Path(path).stat().st_size, digest.hexdigest(), content_type or content_type_for(key))
        config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK)
        self.client.upload_file(
            str(path), self.bucket, self.object_key(key), Config=config,
            ExtraArgs={"ContentType": info.content_type, "Metadata": {"sha256": info.sha256}},
        )  # fmt: skip
        return info

    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> ArtifactInfo:
        with tempfile.NamedTemporaryFile(prefix="worldgen-s3-") as spool:
            shutil.copyfileobj(stream, spool, length=1 << 20)
            spool.flush()
            return self.put_file(key, Path(spool.name), content_type)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def info(self, key: str) -> ArtifactInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ArtifactInfo(key, head["ContentLength"], head.get("Metadata", {}).get("sha256", ""), head["ContentType"])

    def list(self, prefix: str) -> list[ArtifactInfo]:
        infos = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                info = self.info(item["Key"][len(self.prefix) :])
                if info is not None:
                    infos.append(info)
        return infos

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + validate_key(prefix.rstrip("/")) + "/"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted

    def download_url(self, key: str, expires_in: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)}, ExpiresIn=expires_in
        )

    def copy_from(self, source: str, key: str, *, sha256: str, content_type: str) -> None:
        """Server-side copy of `source` to `key` (both storage keys), stamping our metadata:
        how a SageMaker run's outputs become a world's artifacts."""
        self.client.copy(
            {"Bucket": self.bucket, "Key": self.object_key(source)},
            self.bucket,
            self.object_key(key),
            ExtraArgs={"MetadataDirective": "REPLACE", "ContentType": content_type, "Metadata": {"sha256": sha256}},
        )
