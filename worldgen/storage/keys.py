"""Every artifact-storage key the service builds, in one place (relative to the storage prefix).

worlds/{job_id}/{name}        a finished world's files (what the API serves)
uploads/{upload_id}/{name}    a client's upload
runs/{processing_job}/...     one SageMaker attempt: request/ in, world/ out
"""

from __future__ import annotations

WORLDS = "worlds/"
UPLOADS = "uploads/"
RUNS = "runs/"
PANORAMA = "panorama.png"
"""A world's panorama: what re-layering (source_world_id) reads."""


def world_prefix(job_id: str) -> str:
    return f"{WORLDS}{job_id}/"


def world_file(job_id: str, name: str) -> str:
    return f"{world_prefix(job_id)}{name}"


def upload_prefix(upload_id: str) -> str:
    return f"{UPLOADS}{upload_id}/"


def upload_file(upload_id: str, name: str) -> str:
    return f"{upload_prefix(upload_id)}{name}"


def run_prefix(processing_job: str) -> str:
    return f"{RUNS}{processing_job}/"


def run_request_prefix(processing_job: str) -> str:
    return f"{run_prefix(processing_job)}request/"


def run_cancel_prefix(processing_job: str) -> str:
    """Where the dispatcher marks a batch's worlds as cancelled (`{prefix}{world id}`)."""
    return f"{run_prefix(processing_job)}cancel/"


def run_output_prefix(processing_job: str) -> str:
    return f"{run_prefix(processing_job)}world/"


def run_output_file(processing_job: str, name: str) -> str:
    return f"{run_output_prefix(processing_job)}{name}"
