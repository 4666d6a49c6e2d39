"""Artifact storage: world outputs and uploads, on local disk (embedded default) or S3."""

from worldgen.storage.base import ArtifactInfo, ArtifactStore, InvalidKey, content_type_for, validate_key

__all__ = ["ArtifactInfo", "ArtifactStore", "InvalidKey", "content_type_for", "validate_key"]
