"""Client commands against a running server: submit, status, jobs, cancel, download."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from worldgen.cli.requests import add_request_arguments, request_from_args
from worldgen.config import Settings
from worldgen.errors import WorldgenError


class ServerError(WorldgenError):
    code = "server_error"


def register(commands: argparse._SubParsersAction) -> None:
    def server_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--server", default=None, help="API base URL (default: WORLDGEN_SERVER_URL)")

    submit = commands.add_parser("submit", help="submit a world request to a server")
    add_request_arguments(submit)
    submit.add_argument("--image", type=Path, default=None, help="photo to outpaint (uploaded first)")
    submit.add_argument("--source-world", default=None, help="re-layer this finished world's panorama")
    submit.add_argument("--follow", action="store_true", help="show progress until the job ends")
    server_flag(submit)
    submit.set_defaults(run=_submit)

    status = commands.add_parser("status", help="show one job")
    status.add_argument("world_id")
    status.add_argument("--follow", action="store_true", help="show progress until the job ends")
    server_flag(status)
    status.set_defaults(run=_status)

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", action="append", default=None)
    jobs.add_argument("--limit", type=int, default=20)
    server_flag(jobs)
    jobs.set_defaults(run=_jobs)

    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("world_id")
    server_flag(cancel)
    cancel.set_defaults(run=_cancel)

    download = commands.add_parser("download", help="download a finished world's artifacts")
    download.add_argument("world_id")
    download.add_argument("--out", type=Path, required=True)
    server_flag(download)
    download.set_defaults(run=_download)


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


def _check(response: Any) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            raise ServerError(f"{response.status_code} {error['code']}: {error['message']}", code=error["code"])
        except (ValueError, KeyError):
            raise ServerError(f"{response.status_code}: {response.text[:500]}") from None
    return response.json()


def _print_job(job: dict[str, Any]) -> None:
    error = f"  error: {job['error']['code']}: {job['error']['message']}" if job.get("error") else ""
    stage = job.get("stage") or "-"
    prompt, percent = job["request"]["prompt"][:50], job["progress"] * 100
    print(f"{job['id']}  {job['status']:9s} {stage:14s} {percent:5.1f}%  {prompt}{error}")


def _follow(client: Any, world_id: str) -> dict[str, Any]:
    from tqdm import tqdm

    job: dict[str, Any] = {}
    bar_format = "{desc:40.40} {percentage:3.0f}%|{bar}| {elapsed}"
    with (
        tqdm(total=100, unit="%", bar_format=bar_format) as bar,
        client.stream("GET", f"/v1/worlds/{world_id}/events", timeout=None) as stream,
    ):
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                job = json.loads(line[6:])
                bar.set_description(f"{job['status']} {job.get('stage') or ''}")
                bar.n = round(job["progress"] * 100)
                bar.refresh()
    return job


def _submit(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    with _client(args) as client:
        body = request.model_dump(mode="json", exclude_none=True)
        if args.image is not None:
            with args.image.open("rb") as handle:
                upload = _check(client.post("/v1/uploads", files={"file": (args.image.name, handle)}))
            body["image_upload_id"] = upload["id"]
        if args.source_world:
            body["source_world_id"] = args.source_world
        job = _check(client.post("/v1/worlds", json=body))
        print(job["id"])
        if args.follow:
            job = _follow(client, job["id"])
            _print_job(job)
            return 0 if job.get("status") == "succeeded" else 1
    return 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _follow(client, args.world_id) if args.follow else _check(client.get(f"/v1/worlds/{args.world_id}"))
    if args.follow:
        job = job or {}
    _print_job(job)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    with _client(args) as client:
        page = _check(client.get("/v1/worlds", params=params))
    for job in page["items"]:
        _print_job(job)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_job(_check(client.post(f"/v1/worlds/{args.world_id}/cancel")))
    return 0


def _download(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        listing = _check(client.get(f"/v1/worlds/{args.world_id}/artifacts"))
        for artifact in listing["items"]:
            target = args.out / artifact["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with client.stream("GET", artifact["url"], follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise ServerError(f"{response.status_code} downloading {artifact['name']}")
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != artifact["sha256"]:
                raise ServerError(f"{artifact['name']}: checksum mismatch")
            print(f"{target} ({artifact['size']} bytes, sha256 ok)", file=sys.stdout)
    return 0
