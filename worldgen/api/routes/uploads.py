"""POST /v1/uploads: inputs that world requests refer to by id.

The form is parsed here as it streams (python-multipart), not by FastAPI's `UploadFile`: Starlette's
form parser spools the whole file part before the handler runs, so a 2 GB upload was written to
/tmp in full before its 413. Here the file's bytes are counted as they arrive and the request ends
at the first byte over the limit, with nothing more read or written."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from worldgen.api.auth import Caller, current_caller
from worldgen.api.errors import ApiError
from worldgen.api.openapi import error_responses
from worldgen.api.schemas import UploadOut
from worldgen.api.state import AppState, app_state
from worldgen.api.uploads import KINDS, NPY_MAGIC, check_upload, size_limit
from worldgen.jobs.store import Upload, new_id, utcnow, valid_id
from worldgen.storage import keys

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

FORM_OVERHEAD = 64 * 1024
"""Room for boundaries, part headers and the kind field on top of the file's own limit."""
MAX_KIND_BYTES = 64

_FORM_FIELDS = {
    "file": {"type": "string", "format": "binary", "description": "PNG/JPEG image or .npy distance map"},
    "kind": {"type": "string", "enum": list(KINDS), "description": "default: from the content"},
}
_FORM_SCHEMA: dict[str, Any] = {  # the form is parsed by hand, so OpenAPI is told about it here
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": _FORM_FIELDS}}
        },
    }
}


def _safe_name(name: str | None) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "upload").name).lstrip("._") or "upload"
    return cleaned[:100]


@dataclass
class _Form:
    """python-multipart callbacks for one upload form: the `file` part is counted byte by byte and
    queued in `pending` (written off the event loop by `receive`), `kind` is kept, other parts are
    dropped. Over a limit, a callback raises and the parser stops there."""

    out: BinaryIO
    max_image: int
    max_npy: int
    filename: str | None = None
    files: int = 0
    size: int = 0
    head: bytes = b""
    kind: bytes | None = None
    ended: bool = False
    pending: list[bytes] = field(default_factory=list)
    _part: str | None = None
    _header: bytes = b""
    _value: bytes = b""
    _disposition: bytes = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_end": self._on_end,
        }

    async def receive(self, request: Request, boundary: bytes, max_body: int) -> None:
        received = 0
        try:
            parser = MultipartParser(boundary, self.callbacks())
            async for chunk in request.stream():
                received += len(chunk)
                parser.write(chunk)  # first: a file part over its kind's limit names that limit
                if received > max_body:
                    raise ApiError(413, "too_large", f"the upload form is over {max_body} bytes", {"limit": max_body})
                if self.pending:
                    pending, self.pending = self.pending, []
                    await run_in_threadpool(self.out.writelines, pending)
        except FormParserError as exc:
            raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
        except ClientDisconnect:
            raise ApiError(400, "bad_request", "the client went away during the upload") from None
        if not self.ended:
            raise ApiError(400, "bad_request", "the multipart body ends before its closing boundary")

    def _on_part_begin(self) -> None:
        self._part, self._disposition = None, b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._part = name if name in ("file", "kind") else None
        if name == "file":
            self.files += 1
            if self.files > 1:
                raise ApiError(422, "invalid_request", "send one file per upload", {"field": "file"})
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace") or None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part == "file":
            if len(self.head) < 8:
                self.head = (self.head + chunk)[:8]
            self.size += len(chunk)
            limit = size_limit(self.head, max_image=self.max_image, max_npy=self.max_npy)
            if self.size > limit:
                what = ".npy distance maps" if self.head.startswith(NPY_MAGIC) else "images"
                message = f"{_safe_name(self.filename)} is over the {limit}-byte limit for {what}"
                raise ApiError(413, "too_large", message, {"limit": limit})
            self.pending.append(chunk)
        elif self._part == "kind":
            self.kind = (self.kind or b"") + chunk
            if len(self.kind) > MAX_KIND_BYTES:
                raise ApiError(422, "invalid_request", f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})

    def _on_end(self) -> None:
        self.ended = True


def _boundary(content_type: str) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise ApiError(422, "invalid_request", "send the file as multipart/form-data", {"field": "file"})
    if not options.get(b"boundary"):
        raise ApiError(400, "bad_request", "the multipart content type has no boundary")
    return options[b"boundary"]


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    openapi_extra=_FORM_SCHEMA,
    responses=error_responses(
        (400, "`bad_request`: a malformed multipart body (no boundary, cut short); `bad_host`"),
        (413, "`too_large`: the form, or the file for its kind, is over the limit (`details.limit` bytes)"),
        (415, "`unsupported_media_type`: not a PNG or JPEG image, or a distance map that is not .npy"),
        (422, "`invalid_request` (not multipart/form-data, no or empty file, several files, a bad kind), "
              "`invalid_image` or `invalid_distance` (unreadable, not 2:1, out of size, bad values)"),
    ),
)  # fmt: skip
async def create_upload(
    request: Request, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> UploadOut:
    """Form fields: `file` (PNG/JPEG image or .npy distance map) and `kind` (image | panorama |
    distance; default from the content). A Content-Length over the limit is refused before the
    body is read; without one (chunked), at the first byte over."""
    max_image, max_npy = state.settings.upload_max_bytes, state.settings.upload_max_npy_bytes
    max_body = max(max_image, max_npy) + FORM_OVERHEAD
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        raise ApiError(
            413, "too_large", f"the upload form is {length} bytes; the limit is {max_body}", {"limit": max_body}
        )
    boundary = _boundary(request.headers.get("content-type", ""))
    with tempfile.TemporaryDirectory(prefix="worldgen-upload-") as tmp:
        path = Path(tmp) / "data"
        with path.open("wb") as out:
            form = _Form(out, max_image, max_npy)
            await form.receive(request, boundary, max_body)
        return await run_in_threadpool(_store_upload, state, path, form, caller)


def _store_upload(state: AppState, path: Path, form: _Form, caller: Caller) -> UploadOut:
    """Check the received file and store it (blocking: runs in the thread pool)."""
    if not form.files:
        raise ApiError(422, "invalid_request", "the form has no file field", {"field": "file"})
    if not form.size:
        raise ApiError(422, "invalid_request", "the uploaded file is empty", {"field": "file"})
    name = _safe_name(form.filename)
    kind = form.kind.decode("utf-8", "replace") if form.kind else None
    settings = state.settings
    checked = check_upload(path, kind, name, max_image=settings.upload_max_bytes, max_npy=settings.upload_max_npy_bytes)
    upload_id = new_id()
    info = state.storage.put_file(keys.upload_file(upload_id, name), path, checked.content_type)
    upload = Upload(
        id=upload_id, kind=checked.kind, filename=name, content_type=checked.content_type, size=info.size,
        sha256=info.sha256, width=checked.width, height=checked.height, storage_key=info.key, created_at=utcnow(),
        owner_key_id=caller.key_id,
    )  # fmt: skip
    state.store.add_upload(upload)
    return UploadOut.of(upload)


@router.get("/{upload_id}", response_model=UploadOut, responses=error_responses(404))
def get_upload(
    upload_id: str, state: AppState = Depends(app_state), caller: Caller = Depends(current_caller)
) -> UploadOut:
    if not valid_id(upload_id):  # here, before any query: PostgreSQL answers a NUL byte with an error
        raise ApiError(404, "not_found", f"no upload with id {upload_id[:64]!r}")
    upload = state.store.get_upload(upload_id)
    if upload is None or not caller.owns(upload):
        raise ApiError(404, "not_found", f"no upload with id {upload_id!r}")
    return UploadOut.of(upload)
