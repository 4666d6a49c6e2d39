"""/v1/worlds: submit, read, list, cancel, delete, and download a world's artifacts."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from pydantic import ValidationError

from worldgen.api.archive import archive_name, zip_stream
from worldgen.api.auth import Caller, current_caller, too_many
from worldgen.api.errors import ApiError
from worldgen.api.openapi import error_responses
from worldgen.api.schemas import ArtifactList, ArtifactOut, JobList, JobOut
from worldgen.api.state import AppState, app_state
from worldgen.defaults import models_are_tiny, with_defaults
from worldgen.jobs import lifecycle
from worldgen.jobs.artifacts import describe
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import Job, JobNotFound, utcnow
from worldgen.limits import MAX_HEIGHT, MIN_HEIGHT
from worldgen.request import WorldRequest, validation_problems
from worldgen.storage import keys
from worldgen.storage.base import InvalidKey, validate_key

router = APIRouter(prefix="/v1/worlds", tags=["worlds"])


def live_job(state: AppState, world_id: str, caller: Caller) -> Job:
    """The job, or 404 if unknown or another key's, and 410 if deleted."""
    job = state.store.get(world_id)
    if not caller.owns(job):
        raise JobNotFound(world_id)
    if job.deleted_at is not None:
        raise ApiError(410, "gone", f"world {world_id} was deleted", {"deleted_at": job.deleted_at.isoformat()})
    return job


_UPLOAD_KINDS = {"image_upload_id": "image", "panorama_upload_id": "panorama", "distance_upload_id": "distance"}


def _invalid(field: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_request", problem, {"fields": [{"field": field, "message": problem}]})


def check_inputs(state: AppState, request: WorldRequest, caller: Caller) -> WorldRequest:
    """Uploads and source worlds a request refers to must exist and fit; boxes must lie inside the
    panorama they are drawn on. Returns the request with what it left out taken from the source
    world (`inherit`) and the height of a given panorama."""
    for field, kind in _UPLOAD_KINDS.items():
        upload_id = getattr(request, field)
        if not upload_id:
            continue
        upload = state.store.get_upload(upload_id)
        if upload is None or not caller.owns(upload):  # another key's upload is not there for this one
            raise _invalid(field, f"no upload with id {upload_id!r}")
        if upload.kind != kind:
            raise _invalid(field, f"upload {upload.id} is of kind {upload.kind!r}; {field} needs kind {kind!r}")
    size = None
    if request.panorama_upload_id:
        upload = state.store.get_upload(request.panorama_upload_id)
        assert upload is not None and upload.width and upload.height
        size = (upload.width, upload.height)
    if request.source_world_id:
        source = source_world(state, request.source_world_id, caller)
        check_relayering(request, source)
        size = panorama_size(state, source)
        request = inherit(request, source)
        if request.seed is None:
            request = request.with_seed(source.seed)
    if size is not None and "height" not in request.model_fields_set and _valid_height(size[1]):
        request = request.model_copy(update={"height": size[1]})  # the panorama's own, not a default
    if size is not None:
        for layer in ("fg1", "fg2"):
            for index, obj in enumerate(getattr(request, f"objects_{layer}")):
                problem = obj.check_inside(*size)
                if problem:
                    raise _invalid(f"objects_{layer}.{index}.box", problem)
    return request


def _valid_height(height: int) -> bool:
    return MIN_HEIGHT <= height <= MAX_HEIGHT and height % 16 == 0


NOT_INHERITED = frozenset({
    "seed", "labels_fg1", "labels_fg2", "objects_fg1", "objects_fg2", "source_world_id", "image_upload_id",
    "panorama_upload_id", "distance_upload_id", "webhook_url", "stage",
})  # fmt: skip
"""What a re-layering request never takes from its source world: the objects are what it changes,
the inputs are the source world's panorama, and the seed is taken apart (only when not given)."""


def inherit(request: WorldRequest, source: Job) -> WorldRequest:
    """`request` with every field it did not set taken from the source world's request (formats,
    scene, steps, precision, …), except labels, boxes, inputs and webhook; `layered` too, unless
    the request names objects (objects are layers)."""
    names_objects = bool(request.labels_fg1 or request.labels_fg2 or request.objects_fg1 or request.objects_fg2)
    taken = {
        name: value
        for name, value in source.request.items()
        if name in WorldRequest.model_fields
        and name not in NOT_INHERITED
        and name not in request.model_fields_set
        and not (name == "layered" and names_objects)
    }
    if not taken:
        return request
    try:
        return WorldRequest.model_validate({**request.model_dump(mode="json", exclude_unset=True), **taken})
    except ValidationError as exc:
        field, message = validation_problems(exc)[0]
        raise _invalid("source_world_id", f"the source world's {field} no longer fits: {message}; "
                       f"give {field} yourself") from None  # fmt: skip


def check_relayering(request: WorldRequest, source: Job) -> None:
    """A finished full world re-layered with no box and no label would be made again as it is: refused.
    A preview (`stage: panorama`) becomes a world without them."""
    if source.request.get("stage", "world") != "world":
        return
    if request.labels_fg1 or request.labels_fg2 or request.objects_fg1 or request.objects_fg2:
        return
    raise _invalid(
        "objects_fg1",
        f"world {source.id} is already a finished world: to re-layer it, draw a box around an object "
        "(objects_fg1, objects_fg2) or name objects to find (labels_fg1, labels_fg2)",
    )


def check_webhook(state: AppState, url: str, caller: Caller) -> None:
    from worldgen.api.webhooks import target_problem
    from worldgen.jobs.api_keys import webhook_secret

    if state.settings.webhook_secret is None and webhook_secret(state.store, caller.key_id) is None:
        raise _invalid("webhook_url", "this server sends no webhooks (WORLDGEN_WEBHOOK_SECRET is not set)")
    problem = target_problem(url, state.settings.webhook_allow_private)
    if problem is not None:
        raise _invalid("webhook_url", problem)


def source_world(state: AppState, world_id: str, caller: Caller) -> Job:
    try:
        job = state.store.get(world_id)
        if not caller.owns(job):
            raise JobNotFound(world_id)
    except JobNotFound:
        raise _invalid("source_world_id", f"no world with id {world_id!r}") from None
    if job.deleted or job.artifacts_removed:
        raise _invalid("source_world_id", f"world {world_id} was deleted or its files expired")
    if job.status is not JobStatus.SUCCEEDED:
        raise _invalid("source_world_id", f"world {world_id} is {job.status.value}, not succeeded")
    if not any(a["name"] == "panorama.png" for a in job.artifacts):
        raise _invalid("source_world_id", f"world {world_id} has no panorama.png")
    return job


def panorama_size(state: AppState, job: Job) -> tuple[int, int]:
    """(width, height) of a finished world's panorama.png (only the image header is decoded)."""
    from PIL import Image

    with state.storage.open(keys.world_file(job.id, keys.PANORAMA)) as stream, Image.open(stream) as image:
        return image.size


SUBMIT_EXAMPLES: dict[str, Any] = {
    "prompt": {"summary": "A world from a prompt", "value": {"prompt": "a lake at dawn, pine forest, mountains"}},
    "preview": {
        "summary": "A panorama first (then source_world_id builds the world from it)",
        "value": {"prompt": "a desert canyon at noon", "seed": 7, "stage": "panorama", "height": 512},
    },
    "layers": {
        "summary": "Named foreground layers, glTF only",
        "value": {"prompt": "a harbour town", "labels_fg1": ["boat"], "labels_fg2": ["house"], "formats": ["glb"]},
    },
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        **error_responses(
            (409, "`idempotency_conflict`: this Idempotency-Key was used with another body"),
            (410, "`gone`: the world made with this Idempotency-Key was deleted; use a new key"),
            (422, "`invalid_request`: the body, an upload or source world it names, or a box (`details.fields`); "
                  "`invalid_json`: the body is not valid JSON (`details.line`, `details.column`)"),
            (429, "`rate_limited`: too many requests, or too many worlds queued or running with this key "
                  "(`Retry-After`)"),
        ),
        202: {"headers": {
            "Location": {"description": "the world's URL", "schema": {"type": "string"}},
            "Idempotent-Replayed": {"description": "`true` when an earlier request with this Idempotency-Key made "
                                    "the world", "schema": {"type": "string", "enum": ["true"]}},
        }},
    },
)  # fmt: skip
def submit(
    request: Annotated[WorldRequest, Body(openapi_examples=SUBMIT_EXAMPLES)],
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    state: AppState = Depends(app_state),
    caller: Caller = Depends(current_caller),
) -> JobOut:
    fingerprint = request.fingerprint()  # of the body as sent: a seedless retry replays the same job
    request = check_inputs(state, request, caller)
    request = with_defaults(request, models_are_tiny(state.settings.resolved_models_dir))
    if request.webhook_url is None and caller.key is not None and caller.key.webhook_url:
        request = request.model_copy(update={"webhook_url": caller.key.webhook_url})  # the key's default
    if request.webhook_url is not None:
        check_webhook(state, request.webhook_url, caller)
    if idempotency_key is not None and caller.key_id is not None:
        idempotency_key = f"{caller.key_id}:{idempotency_key}"  # keys are per API key
    if caller.key_id is not None and not state.store.is_idempotency_key(idempotency_key):
        active = state.store.active_count(caller.key_id)
        if active >= state.settings.key_active_worlds:
            raise too_many(f"this key has {active} worlds queued or running (at most "
                           f"{state.settings.key_active_worlds}); wait for one to end", 30)  # fmt: skip
    resolved = request if request.seed is not None else request.with_seed(secrets.randbelow(2**32))
    job, created = state.store.create(
        resolved,
        backend=state.backend,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        max_attempts=state.settings.max_attempts,
        owner_key_id=caller.key_id,
    )
    if not created and job.deleted:
        raise ApiError(410, "gone", f"the world made with this Idempotency-Key ({job.id}) was deleted; use a new key",
                       {"world_id": job.id})  # fmt: skip
    response.headers["Location"] = f"/v1/worlds/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.of(job, state.store.queue_position(job))


@router.get("", response_model=JobList, responses=error_responses(
    (422, "`invalid_request`: a status, limit or cursor (`details.fields`)")
))  # fmt: skip
def list_worlds(
    status: Annotated[list[JobStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
    state: AppState = Depends(app_state),
    caller: Caller = Depends(current_caller),
) -> JobList:
    owner = None if caller.sees_all else caller.key_id
    try:
        jobs, next_cursor = state.store.list(status=status, limit=limit, cursor=cursor, owner_key_id=owner)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_request", str(exc), {"fields": [{"field": "cursor", "message": str(exc)}]}
        ) from None
    return JobList(items=[JobOut.of(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{world_id}", response_model=JobOut)
def get_world(world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)) -> JobOut:
    job = live_job(state, world_id, caller)
    return JobOut.of(job, state.store.queue_position(job))


@router.post("/{world_id}/cancel", response_model=JobOut, responses=error_responses(
    (409, "`conflict`: the world has already ended (`details.status`)")
))  # fmt: skip
def cancel_world(
    world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> JobOut:
    live_job(state, world_id, caller)
    return JobOut.of(lifecycle.cancel(state.store, world_id))


@router.delete("/{world_id}", response_model=JobOut)
def delete_world(
    world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> JobOut:
    """Cancel if needed, remove the artifacts, keep a tombstone (the id then answers 410)."""
    job = live_job(state, world_id, caller)
    if not job.status.terminal:
        job = lifecycle.cancel(state.store, world_id)
    job = state.store.mark_deleted(world_id)
    if job.status.terminal:
        state.storage.delete_prefix(keys.world_prefix(world_id))
        job = state.store.set_fields(world_id, artifacts_removed=True)
    return JobOut.of(job)


@router.get("/{world_id}/artifacts", response_model=ArtifactList, responses=error_responses(
    (410, "`gone`: the world was deleted, or its artifacts removed (retention)")
))  # fmt: skip
def list_artifacts(
    world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> ArtifactList:
    job = live_job(state, world_id, caller)
    if job.artifacts_removed:
        raise ApiError(410, "gone", f"the artifacts of world {world_id} were removed (retention)")
    seconds = state.settings.download_url_seconds
    expires_at = utcnow() + timedelta(seconds=seconds)
    items = []
    for artifact in job.artifacts:
        presigned = state.storage.download_url(keys.world_file(world_id, artifact["name"]), seconds)
        text = describe(artifact["name"], artifact.get("layer"))
        items.append(
            ArtifactOut(
                name=artifact["name"], title=text.title, description=text.description, group=text.group,
                size=artifact["size"], sha256=artifact["sha256"], content_type=artifact["content_type"],
                url=f"/v1/worlds/{world_id}/artifacts/{artifact['name']}",
                download_url=presigned,
                expires_at=expires_at if presigned else None,
            )
        )  # fmt: skip
    return ArtifactList(world_id=world_id, items=items, archive_url=f"/v1/worlds/{world_id}/archive")


@router.get(
    "/{world_id}/archive",
    response_model=None,
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every file of the world in one .zip (streamed), in a folder named like the file",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"Content-Disposition": {
                "description": '`attachment; filename="<prompt>-<id>.zip"`', "schema": {"type": "string"}
            }},
        },
        **error_responses(
            (409, "`conflict`: the world has not succeeded (`details.status`)"),
            (410, "`gone`: the world was deleted, or its artifacts removed (retention)"),
        ),
    },
)  # fmt: skip
def get_archive(
    world_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> StreamingResponse:
    job = live_job(state, world_id, caller)
    if job.artifacts_removed:
        raise ApiError(410, "gone", f"the artifacts of world {world_id} were removed (retention)")
    if job.status is not JobStatus.SUCCEEDED:
        raise ApiError(409, "conflict", f"world {world_id} is {job.status.value}: only a finished world has an "
                       "archive", {"status": job.status.value})  # fmt: skip
    name = archive_name(str(job.request.get("prompt") or ""), world_id)
    headers = {"Content-Disposition": f'attachment; filename="{name}.zip"', "Cache-Control": "no-store"}
    stream = zip_stream(state.storage, world_id, list(job.artifacts), name)
    return StreamingResponse(stream, media_type="application/zip", headers=headers)


@router.get(
    "/{world_id}/artifacts/{name:path}",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "The file, with the content type listed for it in the world's artifacts",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "ETag": {"description": "the file's SHA-256, quoted", "schema": {"type": "string"}},
                "X-Checksum-Sha256": {"description": "the file's SHA-256", "schema": {"type": "string"}},
            },
        },
        307: {
            "description": "Redirect to a presigned storage URL (S3 storage)",
            "headers": {"Location": {"description": "the presigned URL", "schema": {"type": "string"}}},
        },
        **error_responses(
            (404, "`not_found`: no such world (or another key's), or no artifact by that name"),
            (410, "`gone`: the world was deleted, or its artifacts removed (retention)"),
        ),
    },
)
def get_artifact(
    world_id: str, name: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> Response:
    job = live_job(state, world_id, caller)
    if job.artifacts_removed:
        raise ApiError(410, "gone", f"the artifacts of world {world_id} were removed (retention)")
    try:
        key = validate_key(keys.world_file(world_id, name))
    except InvalidKey:
        raise ApiError(404, "not_found", f"no artifact named {name!r}") from None
    entry = next((a for a in job.artifacts if a["name"] == name), None)
    if entry is None:
        raise ApiError(404, "not_found", f"world {world_id} has no artifact named {name!r}")
    url = state.storage.download_url(key, state.settings.download_url_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    headers = {"ETag": f'"{entry["sha256"]}"', "X-Checksum-Sha256": entry["sha256"]}
    local_path = getattr(state.storage, "local_path", lambda key: None)(key)
    if local_path is not None:
        return FileResponse(
            local_path, media_type=entry["content_type"], headers=headers, filename=name.rsplit("/")[-1]
        )
    stream = state.storage.open(key)
    return StreamingResponse(iter(lambda: stream.read(1 << 20), b""), media_type=entry["content_type"], headers=headers)
