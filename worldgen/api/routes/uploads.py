"""POST /v1/uploads: inputs that world requests refer to by id."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, UploadFile

from worldgen.api.errors import ApiError
from worldgen.api.schemas import UploadOut
from worldgen.api.state import AppState, app_state
from worldgen.api.uploads import check_upload
from worldgen.jobs.store import Upload, new_id, utcnow
from worldgen.storage import keys

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def _safe_name(name: str | None) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "upload").name).lstrip("._") or "upload"
    return cleaned[:100]


@router.post("", status_code=201, response_model=UploadOut)
def create_upload(
    file: UploadFile = File(..., description="PNG/JPEG image or .npy distance map"),
    kind: str | None = Form(None, description="image | panorama | distance (default: from the content)"),
    state: AppState = Depends(app_state),
) -> UploadOut:
    limit = max(state.settings.upload_max_bytes, state.settings.upload_max_npy_bytes)
    with tempfile.TemporaryDirectory(prefix="worldgen-upload-") as tmp:
        path = Path(tmp) / "data"
        written = 0
        with path.open("wb") as out:
            while block := file.file.read(1 << 20):
                written += len(block)
                if written > limit:
                    raise ApiError(413, "too_large", f"upload exceeds {limit} bytes")
                out.write(block)
        if written == 0:
            raise ApiError(422, "invalid_request", "the uploaded file is empty", {"field": "file"})
        name = _safe_name(file.filename)
        checked = check_upload(
            path, kind, name, max_image=state.settings.upload_max_bytes, max_npy=state.settings.upload_max_npy_bytes
        )
        upload_id = new_id()
        info = state.storage.put_file(keys.upload_file(upload_id, name), path, checked.content_type)
    upload = Upload(
        id=upload_id, kind=checked.kind, filename=name, content_type=checked.content_type, size=info.size,
        sha256=info.sha256, width=checked.width, height=checked.height, storage_key=info.key, created_at=utcnow(),
    )  # fmt: skip
    state.store.add_upload(upload)
    return UploadOut.of(upload)


@router.get("/{upload_id}", response_model=UploadOut)
def get_upload(upload_id: str, state: AppState = Depends(app_state)) -> UploadOut:
    upload = state.store.get_upload(upload_id)
    if upload is None:
        raise ApiError(404, "not_found", f"no upload with id {upload_id!r}")
    return UploadOut.of(upload)
