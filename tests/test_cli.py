"""The `worldgen` command line as people use it: every command's help, how flags parse and how
errors name them, local generation's input checks and output folder, and the client commands
against a real `worldgen serve` on the tiny models."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import box_room, gradient_rgb, running_service
from worldgen.cli.client import title
from worldgen.cli.common import output_dir
from worldgen.cli.main import build_parser, main
from worldgen.cli.requests import flag_of, request_from_args, with_flags

DEAD_SERVER = "http://127.0.0.1:9"  # nothing listens: a command that got this far would say so


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLDGEN_API_KEY", raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`worldgen ARGS` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_process(*args: str | Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worldgen", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def flat(text: str) -> str:
    return " ".join(text.split())


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(("worldgen", *path)), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


# --- help -------------------------------------------------------------------------------------


def test_every_command_and_option_is_described() -> None:
    undescribed = []
    commands = dict(_parsers(build_parser()))
    assert {"worldgen delete", "worldgen worker", "worldgen models make-tiny", "worldgen keys create"} <= set(commands)
    for name, parser in commands.items():
        if not (parser.description or "").strip():
            undescribed.append(name)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip():
                undescribed.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        parser.format_help()  # every usage line formats (argparse asserts on some metavars)
    assert undescribed == []


def test_enums_are_choices_and_defaults_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    commands = dict(_parsers(build_parser()))
    choices = {
        action.dest: set(action.choices or ())
        for name in ("worldgen generate", "worldgen submit", "worldgen jobs")
        for action in commands[name]._actions
    }
    assert choices["step_cache"] == {"off", "first-block", "taylorseer"}
    assert choices["precision"] == {"auto", "fp32", "bf16", "fp8-storage", "fp8"}
    assert choices["scene"] == {"outdoor", "indoor"}
    assert choices["vae_mode"] == {"full-frame", "reference"}
    assert choices["stage"] == {"panorama", "world"}
    assert choices["status"] == {"queued", "starting", "running", "canceling", "succeeded", "failed", "canceled"}

    def help_of(*command: str) -> str:
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        assert done.value.code == 0
        return flat(capsys.readouterr().out)

    generate = help_of("generate")
    assert "--height PX" in generate and "(default: 960, or 128 with the tiny test models)" in generate
    assert "(default: 50, or 4 with the tiny test models)" in generate
    assert "--guidance G FLUX guidance scale, 0..100 (default: 30.0)" in generate
    assert "{ply,glb,drc}" in generate and "(default: glb,ply)" in generate
    assert "examples:" in generate
    serve = help_of("serve")
    assert "(default: 127.0.0.1)" in serve and "(default: 8000)" in serve
    assert "(default: 0)" in help_of("models", "make-tiny")
    assert "(default: 20)" in help_of("jobs")
    assert "SageMaker" in help_of("worker") and "WORLDGEN_BACKEND" in help_of("worker")
    assert "410 gone" in help_of("delete")


# --- flags ------------------------------------------------------------------------------------


def test_labels_take_one_value_each_so_the_prompt_is_kept() -> None:
    argv = ["submit", "--labels-fg1", "tree", "a lake", "--labels-fg1", "bench, rock", "--labels-fg2", "house"]
    args = build_parser().parse_args(argv)
    assert args.prompt == "a lake"
    request = request_from_args(args)
    assert request.labels_fg1 == ["tree", "bench", "rock"] and request.labels_fg2 == ["house"]
    # only what was given is sent: the server fills in the rest (height and steps by its models)
    body = request.model_dump(mode="json", exclude_unset=True)
    assert body == {"prompt": "a lake", "labels_fg1": ["tree", "bench", "rock"], "labels_fg2": ["house"]}
    sized = request_from_args(build_parser().parse_args(["submit", "x", "--height", "64", "--steps", "2"]))
    assert sized.model_dump(mode="json", exclude_unset=True) == {"prompt": "x", "height": 64, "steps": 2}
    for formats in (["glb,ply"], ["glb", "ply"]):
        parsed = build_parser().parse_args(["generate", "x", "--out", "o", "--formats", *formats])
        assert request_from_args(parsed).formats == ["glb", "ply"]


def test_errors_name_the_flags_and_the_prompt_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "submit", "--labels-fg1", "tree", "--server", DEAD_SERVER)
    assert code == 2 and "PROMPT argument" in err and "--prompt" not in err
    np.save(tmp_path / "d.npy", box_room(32, 64))
    code, _, err = cli(capsys, "submit", "a lake", "--distance", tmp_path / "d.npy", "--server", DEAD_SERVER)
    assert code == 2 and "--distance needs the --panorama it belongs to" in err and "upload_id" not in err
    box = '[{"label": "tree", "box": [0, 0, 10, 10]}]'
    code, _, err = cli(capsys, "submit", "a lake", "--height", "100", "--server", DEAD_SERVER)
    assert code == 2 and "--height: height must be a multiple of 16 (got 100)" in err
    code, _, err = cli(capsys, "submit", "a lake", "--objects-fg1", box, "--server", DEAD_SERVER)
    assert code == 2 and "--objects-fg1: boxes need a panorama to be drawn on: give --source-world or --panorama" in err
    code, _, err = cli(capsys, "generate", "a lake", "--objects-fg1", box, "--out", tmp_path / "o")
    assert code == 2 and "give --panorama" in err and "--source-world" not in err
    code, _, err = cli(
        capsys, "submit", "--source-world", "w1", "--panorama", tmp_path / "d.npy", "--server", DEAD_SERVER
    )
    assert code == 2 and "give at most one of --image, --panorama, --source-world" in err
    with pytest.raises(SystemExit):
        main(["submit", "x", "--formats", "glb", "obj"])
    assert "invalid format 'obj'" in capsys.readouterr().err
    assert title({"request": {"source_world_id": "w1"}}) == "re-layered w1"
    assert title({"request": {"panorama_upload_id": "u1"}}) == "uploaded panorama"
    assert title({"request": {"prompt": " a  lake\n", "source_world_id": "w1"}}) == "a lake"
    assert flag_of("panorama_upload_id") == "--panorama" and flag_of("layered") == "--single-layer"
    assert flag_of("objects_fg2.1.box") == "--objects-fg2 #2 box" and flag_of("prompt") == "PROMPT"
    assert with_flags("source_world_id: world w is running") == "--source-world: world w is running"


# --- generate: inputs and the output folder ----------------------------------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    Image.fromarray(gradient_rgb(64, 128)).save(tmp_path / "pano.png")
    Image.fromarray(gradient_rgb(64, 100)).save(tmp_path / "wide.png")
    (tmp_path / "corrupt.png").write_bytes((tmp_path / "pano.png").read_bytes()[:60])  # a PNG cut short
    (tmp_path / "notes.txt").write_text("not an array\n")
    (tmp_path / "text.png").write_text("not an image\n")
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--panorama", "corrupt.png"], "--panorama {dir}/corrupt.png: not a readable image"),
        (["--panorama", "text.png"], "--panorama {dir}/text.png: only PNG and JPEG images are accepted"),
        (
            ["--panorama", "pano.png", "--distance", "notes.txt"],
            "--distance {dir}/notes.txt: a distance map must be a .npy",
        ),
        (["--panorama", "wide.png"], "--panorama {dir}/wide.png: a panorama must be 2:1 (got 100×64)"),
        (["a kitchen", "--image", "missing.jpg"], "--image {dir}/missing.jpg: file not found"),
    ],
)
def test_generate_says_what_is_wrong_with_which_file(
    inputs: Path, tiny_models: Path, flags: list[str], message: str
) -> None:
    paths = [str(inputs / f) if f.endswith((".png", ".txt", ".jpg")) else f for f in flags]
    out = inputs / "out" / "world"
    result = cli_process("generate", *paths, "--out", out, "--models-dir", tiny_models)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("worldgen: error: ") and "Traceback" not in result.stderr
    assert message.format(dir=inputs) in result.stderr
    assert not (inputs / "out").exists()


def test_generate_without_models_says_how_to_get_them_and_leaves_no_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "new" / "world"
    code, _, err = cli(capsys, "generate", "a lake", "--out", out, "--models-dir", tmp_path / "none", "--steps", "1")
    assert code == 2
    err = flat(err)
    assert "worldgen models download flux-dev" in err
    assert "worldgen models make-tiny DIR" in err and "--models-dir DIR" in err and "WORLDGEN_MODELS_DIR=DIR" in err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    code, _, _ = cli(capsys, "generate", "a lake", "--out", tmp_path / "kept", "--models-dir", tmp_path / "none")
    assert code == 2 and [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]
    code, _, err = cli(capsys, "generate", "a lake", "--out", tmp_path / "kept" / "notes.txt")
    assert code == 2 and "exists and is not a folder" in err


def test_output_dir_removes_only_what_the_command_made(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), output_dir(tmp_path / "a" / "b") as out:
        (out / "sub").mkdir(parents=True)
        (out / "sub" / "half.ply").write_bytes(b"ply")
        raise RuntimeError("failed half-way")
    assert not (tmp_path / "a").exists()
    (tmp_path / "old" / "keep").mkdir(parents=True)
    (tmp_path / "old" / "keep" / "mine.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), output_dir(tmp_path / "old") as out:
        (out / "keep" / "new.png").write_bytes(b"png")
        (out / "made").mkdir()
        (out / "made" / "x").write_bytes(b"x")
        raise KeyboardInterrupt
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "old").rglob("*")) == [
        "old/keep",
        "old/keep/mine.txt",
    ]
    with output_dir(tmp_path / "ok") as out:
        out.mkdir()
        (out / "f").write_text("kept")
    assert (tmp_path / "ok" / "f").read_text() == "kept"


# --- client commands against a real server ----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[str]:
    with running_service(tmp_path_factory.mktemp("cli-service"), tiny_models) as url:
        yield url


def _world(server: str, world_id: str) -> dict:
    return httpx.get(f"{server}/v1/worlds/{world_id}", timeout=30).json()


def test_submit_follow_shows_stage_messages(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys, "submit", "a canyon", "--height", "64", "--steps", "8", "--single-layer", "--follow", "--server", server
    )
    assert code == 0, err
    world_id = out.split()[0]
    assert f"{world_id}  a canyon: succeeded" in out
    lines = err.splitlines()
    assert any(re.fullmatch(r"\s*\d+%  panorama step \d/8", line) for line in lines), err
    assert any("loading_models" in line for line in lines) and "queued" in err
    code, out, _ = cli(capsys, "status", world_id, "--server", server)
    assert code == 0 and "a canyon: succeeded" in out


def test_submit_uploads_panorama_and_distance(server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    Image.fromarray(gradient_rgb(64, 128)).save(tmp_path / "pano.png")
    np.save(tmp_path / "distance.npy", box_room(64, 128))
    code, out, err = cli(
        capsys,
        "submit",
        "--panorama",
        tmp_path / "pano.png",
        "--distance",
        tmp_path / "distance.npy",
        "--single-layer",
        "--formats",
        "ply",
        "--follow",
        "--server",
        server,
    )
    assert code == 0, err
    world_id = out.split()[0]
    assert "uploaded panorama: succeeded" in out
    request = _world(server, world_id)["request"]
    for field, kind in (("panorama_upload_id", "panorama"), ("distance_upload_id", "distance")):
        upload = httpx.get(f"{server}/v1/uploads/{request[field]}", timeout=30).json()
        assert (upload["kind"], upload["width"], upload["height"]) == (kind, 128, 64)
    code, out, _ = cli(capsys, "jobs", "--server", server)
    assert code == 0 and re.search(rf"{world_id}\s+succeeded\s+\S+\s+100%\s+\d+[smh]\s+uploaded panorama", out), out
    assert out.splitlines()[0].split() == ["ID", "STATUS", "STAGE", "DONE", "AGE", "TITLE"]
    Image.fromarray(gradient_rgb(64, 100)).save(tmp_path / "wide.png")
    code, _, err = cli(capsys, "submit", "--panorama", tmp_path / "wide.png", "--server", server)
    assert code == 2 and f"--panorama {tmp_path / 'wide.png'}: upload refused: 422 invalid_image" in err
    assert "must be 2:1" in err


def _panorama_preview(capsys: pytest.CaptureFixture[str], server: str, prompt: str) -> str:
    """A quick `--stage panorama` world, followed until it ends; its id."""
    quick = ("--stage", "panorama", "--height", "64", "--steps", "1")
    code, out, err = cli(capsys, "submit", prompt, *quick, "--follow", "--server", server)
    assert code == 0, err
    return out.split()[0]


def test_submit_stage_panorama_then_relayer_it(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    preview = _panorama_preview(capsys, server, "a dune")
    assert _world(server, preview)["request"]["stage"] == "panorama"
    names = {a["name"] for a in httpx.get(f"{server}/v1/worlds/{preview}/artifacts", timeout=30).json()["items"]}
    assert "panorama.png" in names and not any(n.endswith((".ply", ".glb")) for n in names)
    code, out, err = cli(
        capsys,
        "submit",
        "--source-world",
        preview,
        "--single-layer",
        "--formats",
        "glb",
        "--follow",
        "--server",
        server,
    )
    assert code == 0, err
    relayered = out.split()[0]
    assert f"{relayered}  a dune: succeeded" in out  # the prompt comes from the source world
    assert _world(server, relayered)["request"]["source_world_id"] == preview
    code, _, err = cli(capsys, "submit", "--source-world", "nope", "--server", server)
    assert code == 2 and "422 invalid_request: --source-world: no world with id 'nope'" in err


def test_cancel_download_and_delete(server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(
        capsys, "submit", "a slow one", "--height", "64", "--steps", "200", "--single-layer", "--server", server
    )
    assert code == 0, err
    world_id = out.strip()
    target = tmp_path / "dl" / "world"
    code, _, err = cli(capsys, "download", world_id, "--out", target, "--server", server)
    assert code == 2 and "nothing to download until it ends" in err
    assert not (tmp_path / "dl").exists()
    code, out, _ = cli(capsys, "cancel", world_id, "--server", server)
    assert code == 0 and world_id in out and "cancel" in out
    code, out, _ = cli(capsys, "status", world_id, "--follow", "--server", server)
    assert code == 1 and re.search(r"a slow one: canceled (by request )?(during \w+|before it started)", out), out
    assert "canceled: canceled" not in out
    code, _, err = cli(capsys, "download", world_id, "--out", target, "--server", server)
    assert code == 2 and "no files to download" in err and not (tmp_path / "dl").exists()
    code, out, _ = cli(capsys, "delete", world_id, "--server", server)
    assert code == 0 and "deleted (it was canceled)" in out and "410 gone" in out
    code, _, err = cli(capsys, "status", world_id, "--server", server)
    assert code == 2 and f"410 gone: world {world_id} was deleted" in err
    code, _, err = cli(capsys, "download", world_id, "--out", target, "--server", server)
    assert code == 2 and "410 gone" in err and not (tmp_path / "dl").exists()
    code, _, err = cli(capsys, "delete", "nope", "--server", server)
    assert code == 2 and "404 not_found" in err
    code, _, err = cli(capsys, "download", "nope", "--out", target, "--server", server)
    assert code == 2 and "404 not_found" in err and not (tmp_path / "dl").exists()


def test_delete_a_finished_world(server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    world_id = _panorama_preview(capsys, server, "a pond")
    code, out, _ = cli(capsys, "download", world_id, "--out", tmp_path / "got", "--server", server)
    assert code == 0 and (tmp_path / "got" / "panorama.png").is_file() and "sha256 ok" in out
    code, out, _ = cli(capsys, "delete", world_id, "--server", server)
    assert code == 0 and f"{world_id}  a pond: deleted (it had succeeded)" in out
    code, _, err = cli(capsys, "delete", world_id, "--server", server)
    assert code == 2 and "410 gone" in err


def test_a_failed_world_says_where_it_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_service(tmp_path, tmp_path / "no-models") as url:
        code, out, err = cli(capsys, "submit", "a lake", "--height", "64", "--steps", "1", "--follow", "--server", url)
        world_id = out.split()[0]
        deleted = cli(capsys, "delete", world_id, "--server", url)
    assert code == 1, err
    assert re.search(r"a lake: failed during \w+: model 'flux-dev' .* is incomplete", out), out
    assert deleted[0] == 0 and f"{world_id}  a lake: deleted (it had failed)" in deleted[1], deleted
