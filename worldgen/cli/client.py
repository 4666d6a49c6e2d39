"""Client commands against a running server: submit, status, jobs, cancel, delete, download."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from worldgen.cli.common import ProgressLines, add_command, output_dir, percent
from worldgen.cli.requests import (
    INPUT_FLAGS,
    INPUT_KINDS,
    add_input_arguments,
    add_request_arguments,
    flag_of,
    input_files,
    request_from_args,
    with_flags,
)
from worldgen.config import Settings
from worldgen.errors import WorldgenError
from worldgen.jobs.state import JobStatus

STATUSES = tuple(s.value for s in JobStatus)
TERMINAL = ("succeeded", "failed", "canceled")


class ServerError(WorldgenError):
    code = "server_error"


def register(commands: argparse._SubParsersAction) -> None:
    def server_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--server",
            default=None,
            metavar="URL",
            help="API base URL (default: WORLDGEN_SERVER_URL, else http://127.0.0.1:8000); "
            "the key sent is WORLDGEN_API_KEY",
        )

    def world_id(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("world_id", metavar="WORLD_ID", help="the id that `worldgen submit` printed")

    submit = add_command(
        commands,
        "submit",
        "submit a world request to a server",
        "Prints the new world's id. Files given with --image, --panorama or --distance are uploaded first. "
        "Flags left out get the server's defaults (which depend on the models it serves).",
        """
worldgen submit "a lake at dawn, pine forest" --follow
worldgen submit "a harbour town" --labels-fg1 boat,pier --labels-fg2 house --formats glb
worldgen submit "a canyon" --stage panorama --seed 7     # a quick preview, then:
worldgen submit --source-world WORLD_ID --objects-fg1 '[{"label": "tree", "box": [10, 20, 90, 120]}]'
worldgen submit --panorama pano.png --distance distance.npy --single-layer --follow""",
    )
    add_request_arguments(submit, remote=True)
    add_input_arguments(submit, remote=True)
    submit.add_argument(
        "--source-world",
        default=None,
        metavar="WORLD_ID",
        help="build on this world's panorama instead of generating one: a preview (--stage panorama) "
        "becomes a world, a whole world is re-layered (give labels or boxes); flags left out are taken from "
        "its request, its seed too",
    )
    submit.add_argument(
        "--follow", action="store_true", help="show progress until the world ends; exit 1 unless it succeeded"
    )
    server_flag(submit)
    submit.set_defaults(run=_submit)

    status = add_command(
        commands,
        "status",
        "show one world: status, stage, progress, error and warnings",
        examples="worldgen status WORLD_ID\nworldgen status WORLD_ID --follow",
    )
    world_id(status)
    status.add_argument(
        "--follow", action="store_true", help="show progress until the world ends; exit 1 unless it succeeded"
    )
    server_flag(status)
    status.set_defaults(run=_status)

    jobs = add_command(
        commands,
        "jobs",
        "list worlds, newest first: id, status, stage, progress, age and title",
        examples="worldgen jobs\nworldgen jobs --status running --status queued --limit 50",
    )
    jobs.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        default=None,
        help="only worlds with this status; repeat for several (default: every status)",
    )
    jobs.add_argument("--limit", type=_limit, default=20, metavar="N", help="how many worlds to show, 1..100")
    server_flag(jobs)
    jobs.set_defaults(run=_jobs)

    cancel = add_command(
        commands,
        "cancel",
        "stop a queued or running world (its record stays; see also delete)",
        "A queued world ends at once; a running one at its next step. A world that has already ended "
        "cannot be canceled (409).",
        "worldgen cancel WORLD_ID",
    )
    world_id(cancel)
    server_flag(cancel)
    cancel.set_defaults(run=_cancel)

    delete = add_command(
        commands,
        "delete",
        "delete a world: cancel it if needed and remove its files",
        "The world's artifacts are removed; its id then answers 410 gone. This cannot be undone.",
        "worldgen delete WORLD_ID",
    )
    world_id(delete)
    server_flag(delete)
    delete.set_defaults(run=_delete)

    download = add_command(
        commands,
        "download",
        "download a finished world's artifacts, checking each one's SHA-256",
        "The folder is made only once there is something to download; if the download fails, what it made goes again.",
        "worldgen download WORLD_ID --out lake",
    )
    world_id(download)
    download.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder to write the files into (made if needed; files of the same name are replaced)",
    )
    server_flag(download)
    download.set_defaults(run=_download)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1..100 (got {value})")
    return value


class _Client(httpx.Client):
    """An httpx client whose connection failures become one clear CLI error."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach the worldgen server at {self.base_url}: {exc}") from None


def _client(args: argparse.Namespace) -> _Client:
    """A client for the server; it sends WORLDGEN_API_KEY as its bearer key when set."""
    key = os.environ.get("WORLDGEN_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return _Client(base_url=args.server or Settings().server_url, timeout=60, headers=headers)


def _check(response: httpx.Response, *, request_fields: bool = False) -> Any:
    """The JSON body, or a ServerError "<status> <code>: <message>". With `request_fields`, the
    fields of an invalid request are named by their flags."""
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{response.status_code}: {response.text[:500]}") from None
        fields = (error.get("details") or {}).get("fields") if isinstance(error.get("details"), dict) else None
        if request_fields and fields:
            message = "; ".join(f"{flag_of(f.get('field') or '')}: {with_flags(f.get('message', ''))}" for f in fields)
        raise ServerError(f"{response.status_code} {code}: {message}", code=code)
    return response.json()


def title(job: dict[str, Any]) -> str:
    """What the world is: its prompt, else where its panorama came from."""
    request = job.get("request") or {}
    prompt = " ".join(str(request.get("prompt") or "").split())
    if prompt:
        return prompt
    if request.get("source_world_id"):
        return f"re-layered {request['source_world_id']}"
    if request.get("panorama_upload_id"):
        return "uploaded panorama"
    if request.get("image_upload_id"):
        return "world from a photo"
    return "-"


def age(job: dict[str, Any], now: datetime | None = None) -> str:
    """How long ago the world was submitted: 12s, 5m, 3h, 2d."""
    try:
        created = datetime.fromisoformat(str(job["created_at"]))
    except (KeyError, ValueError):
        return "-"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def outcome(job: dict[str, Any]) -> str:
    """The world's state in words: "succeeded", "failed during layers: …", "canceled during panorama"."""
    status, stage = job.get("status") or "unknown", job.get("stage")
    during = f" during {stage}" if stage else ""
    error = job.get("error") or {}
    if status == "failed":
        return f"failed{during}: {error.get('message') or error.get('code') or 'no reason given'}"
    if status == "canceled":
        reason = error.get("message") or ""
        if reason.startswith(("canceled by", "canceled before")):  # the server's own words: where and how far
            return reason
        extra = f" ({reason})" if reason and not reason.startswith(("canceled", "job canceled")) else ""
        return f"canceled{during or ' before it started'}{extra}"
    if status in TERMINAL:
        return status
    message = f" {job['message']}" if job.get("message") else ""
    return f"{status}{during} {percent(job.get('progress') or 0).strip()}{message}"


def _line(job: dict[str, Any]) -> str:
    return f"{job['id']}  {title(job)[:60]}: {outcome(job)}"


def _warnings(job: dict[str, Any]) -> None:
    for warning in job.get("warnings") or []:
        print(f"warning: {warning}")


def _follow(client: _Client, world_id: str) -> dict[str, Any]:
    """Show the world's progress from its event stream (status, stage, percent and the stage's
    message) until it ends; returns the last state."""
    job: dict[str, Any] = {}
    try:
        with (
            ProgressLines() as shown,
            client.stream("GET", f"/v1/worlds/{world_id}/events", timeout=httpx.Timeout(60, read=120)) as stream,
        ):
            if stream.status_code >= 400:
                stream.read()
                _check(stream)
            for line in stream.iter_lines():
                if line.startswith("data: ") and line != "data: {}":
                    job = {**job, **json.loads(line[6:])}  # `request` comes in the first event only
                    if job["status"] not in TERMINAL:
                        quiet = job["status"] == "running" and (job.get("stage") or job.get("message"))
                        status = None if quiet else job["status"]
                        shown.update(job.get("stage"), job.get("progress") or 0, job.get("message"), status)
    except httpx.TransportError as exc:
        raise ServerError(
            f"lost the event stream of {world_id} ({exc}); resume with `worldgen status {world_id} --follow`"
        ) from None
    if not job:
        raise ServerError(f"the server sent no state of world {world_id}")
    if job["status"] not in TERMINAL and not job.get("deleted"):
        raise ServerError(
            f"the event stream of {world_id} ended while it was {job['status']}; resume with "
            f"`worldgen status {world_id} --follow`"
        )
    return job


def _finish(job: dict[str, Any]) -> int:
    """Print how a followed world ended (and its warnings); exit status 0 only if it succeeded."""
    if job.get("deleted"):
        print(f"{job['id']}  deleted")
        return 1
    print(_line(job))
    _warnings(job)
    return 0 if job.get("status") == "succeeded" else 1


def _submit(args: argparse.Namespace) -> int:
    files = input_files(args)
    extra: dict[str, Any] = {field: field for field in files}
    if args.source_world:
        extra["source_world_id"] = args.source_world
    request = request_from_args(args, **extra)  # checked here first: nothing is uploaded for a bad request
    body = request.model_dump(mode="json", exclude_unset=True)
    with _client(args) as client:
        for field, path in files.items():
            body[field] = _upload(client, field, path)
        job = _check(client.post("/v1/worlds", json=body), request_fields=True)
        print(job["id"], flush=True)
        if args.follow:
            return _finish(_follow(client, job["id"]))
    position = f" (queue position {job['queue_position']})" if job.get("queue_position") else ""
    print(f"submitted{position}; follow it with: worldgen status {job['id']} --follow", file=sys.stderr)
    return 0


def _upload(client: _Client, field: str, path: Path) -> str:
    """POST /v1/uploads (kind image, panorama or distance); the upload's id."""
    try:
        with path.open("rb") as handle:
            response = client.post(
                "/v1/uploads", files={"file": (path.name, handle)}, data={"kind": INPUT_KINDS[field]}
            )
    except OSError as exc:
        raise WorldgenError(f"{INPUT_FLAGS[field]} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return str(_check(response)["id"])
    except ServerError as exc:
        raise ServerError(f"{INPUT_FLAGS[field]} {path}: upload refused: {exc.message}", code=exc.code) from None


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            return _finish(_follow(client, args.world_id))
        job = _check(client.get(f"/v1/worlds/{args.world_id}"))
    print(_line(job))
    if job.get("queue_position"):
        print(f"queue position {job['queue_position']}")
    _warnings(job)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    with _client(args) as client:
        page = _check(client.get("/v1/worlds", params=params))
    rows = [
        (job["id"], job["status"], job.get("stage") or "-", percent(job.get("progress") or 0), age(job), title(job))
        for job in page["items"]
    ]
    if not rows:
        print("no worlds" + (f" with status {', '.join(args.status)}" if args.status else ""))
        return 0
    widths = [max(len(r[i]) for r in [("ID", "STATUS", "STAGE", "DONE", "AGE", "TITLE"), *rows]) for i in range(5)]
    for row in [("ID", "STATUS", "STAGE", "DONE", "AGE", "TITLE"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5][:60])
    if page.get("next_cursor"):
        print(f"(the newest {args.limit}; --limit up to 100 shows more)", file=sys.stderr)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _check(client.post(f"/v1/worlds/{args.world_id}/cancel"))
    if job["status"] == "canceling":
        print(f"{job['id']}  {title(job)[:60]}: cancel requested, it stops at its next step")
    else:
        print(_line(job))
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        before = _check(client.get(f"/v1/worlds/{args.world_id}"))
        _check(client.delete(f"/v1/worlds/{args.world_id}"))
    was = before["status"]
    how = {"succeeded": "it had succeeded", "failed": "it had failed"}.get(was, f"it was {was}")
    what = f"canceled and deleted ({how})" if was not in TERMINAL else f"deleted ({how})"
    print(f"{args.world_id}  {title(before)[:60]}: {what}; its files are removed and its id now answers 410 gone")
    return 0


def _download(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _check(client.get(f"/v1/worlds/{args.world_id}"))
        if job["status"] not in TERMINAL:
            raise ServerError(
                f"world {args.world_id} is {outcome(job)}: nothing to download until it ends; "
                f"wait with `worldgen status {args.world_id} --follow`",
                code="not_finished",
            )
        listing = _check(client.get(f"/v1/worlds/{args.world_id}/artifacts"))
        if not listing["items"]:
            raise ServerError(f"world {args.world_id} {outcome(job)}: it has no files to download", code="no_files")
        with output_dir(args.out) as out:
            for artifact in listing["items"]:
                _fetch(client, artifact, out)
    return 0


def _fetch(client: _Client, artifact: dict[str, Any], out: Path) -> None:
    """One artifact into `out`, through a .part file that becomes the file once its SHA-256 matches."""
    target = out / artifact["name"]
    if out.resolve() not in target.resolve().parents:
        raise ServerError(f"the server named an artifact outside the output folder: {artifact['name']!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with client.stream("GET", artifact["url"], follow_redirects=True) as response:
            if response.status_code >= 400:
                response.read()
                _check(response)
            with part.open("wb") as handle:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    handle.write(chunk)
        if digest.hexdigest() != artifact["sha256"]:
            raise ServerError(f"{artifact['name']}: checksum mismatch (the download was corrupted; try again)")
        part.replace(target)
    except httpx.TransportError as exc:
        raise ServerError(f"downloading {artifact['name']} failed: {exc}") from None
    finally:
        part.unlink(missing_ok=True)
    print(f"{target} ({artifact['size']} bytes, sha256 ok)")
