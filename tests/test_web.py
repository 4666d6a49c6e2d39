"""The web page in a real browser (Debian's headless Chromium driven by Playwright) against
`worldgen serve` on tiny models. Screenshots are kept in test-artifacts/web/ (not committed)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import running_service

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[str]:
    assert (ROOT / "worldgen/web/static/app.js").is_file(), "build the page first: npm --prefix web run build"
    with running_service(tmp_path_factory.mktemp("web"), tiny_models) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1400})
        page = context.new_page()
        page.goto(server)
        page.wait_for_selector("body[data-ready='1']")
        yield page
        browser.close()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def shot(page, selector: str, name: str) -> np.ndarray:
    data = page.locator(selector).screenshot()
    (ARTIFACTS / f"{name}.png").write_bytes(data)
    return pixels(data)


def test_bad_input_shows_the_api_message(page) -> None:
    page.fill("textarea[name=prompt]", "a lake")
    page.fill("input[name=height]", "100")
    page.click("button[type=submit]")
    error = page.locator("#form-error")
    error.wait_for(state="visible")
    assert "height must be a multiple of 16" in error.inner_text() and "height:" in error.inner_text()
    page.screenshot(path=str(ARTIFACTS / "bad-input.png"))


def test_submit_follow_view_toggle_download(page, server: str) -> None:
    page.fill("textarea[name=prompt]", "a mountain lake at dawn")
    page.fill("input[name=height]", "64")
    page.fill("input[name=steps]", "2")
    page.click("button[type=submit]")
    item = page.locator("#job-list li").first
    page.wait_for_function("document.querySelector('#job-list li')?.dataset.status === 'succeeded'", timeout=300_000)
    assert item.get_attribute("data-progress") == "100"
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    panorama = shot(page, "#panorama-canvas", "panorama")
    assert panorama.std() > 5  # not blank
    page.click(".tabs button[data-view=world]")
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    page.wait_for_timeout(300)
    world = shot(page, "#world-canvas", "world")
    assert world.std() > 5
    toggles = page.locator("#layer-toggles input")
    names = [toggles.nth(i).get_attribute("data-layer") for i in range(toggles.count())]
    assert "background" in names and "sky" in names
    for name in names:
        page.uncheck(f"#layer-toggles input[data-layer={name}]")
    page.wait_for_timeout(300)
    empty = shot(page, "#world-canvas", "world-all-hidden")
    inner = empty[10:-10, 10:-10]  # inside the rounded corners
    assert np.abs(inner - np.array([0x11, 0x18, 0x27])).max() <= 2  # only the scene background is left
    page.check("#layer-toggles input[data-layer=sky]")  # the sky surrounds everything
    page.wait_for_timeout(300)
    assert shot(page, "#world-canvas", "world-sky-only").std() > 5
    for name in names:
        page.check(f"#layer-toggles input[data-layer={name}]")
    page.check("input[name=nav][value=walk]")
    page.locator("#world-canvas").click()
    standing = shot(page, "#world-canvas", "world-walk-start")
    page.keyboard.down("w")
    page.wait_for_timeout(400)
    page.keyboard.up("w")
    walked = shot(page, "#world-canvas", "world-walk")
    assert np.abs(walked - standing).mean() > 1  # walking forward moves the camera
    links = page.locator("#downloads a")
    assert links.count() >= 5
    href = page.locator("#downloads a", has_text="world.glb").first.get_attribute("href")
    response = httpx.get(server + href)
    assert response.status_code == 200 and response.content[:4] == b"glTF"
    page.click(".tabs button[data-view=boxes]")
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)


def test_draw_boxes_to_relayer(page, server: str) -> None:
    page.click(".tabs button[data-view=boxes]")
    canvas = page.locator("#box-canvas")
    box = canvas.bounding_box()
    page.fill("#box-label", "rock")
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.8, steps=5)
    page.mouse.up()
    assert "fg1: rock" in page.locator("#box-list").inner_text()
    shot(page, ".box-stage", "boxes")
    before = page.locator("#job-list li").count()
    page.click("#relayer")
    page.wait_for_function(f"document.querySelectorAll('#job-list li').length > {before}")
    first = page.locator("#job-list li").first
    assert first.get_attribute("data-status") in ("queued", "starting", "running", "succeeded")
    job = httpx.get(f"{server}/v1/worlds/{first.get_attribute('data-id')}").json()
    (rock,) = job["request"]["objects_fg1"]
    expected = [0.2 * 128, 0.3 * 64, 0.45 * 128, 0.8 * 64]  # in the 128×64 panorama's pixels
    assert rock["label"] == "rock" and np.abs(np.array(rock["box"]) - expected).max() <= 2
    assert job["request"]["source_world_id"]
    page.wait_for_function("document.querySelector('#job-list li')?.dataset.status === 'succeeded'", timeout=300_000)
    done = httpx.get(f"{server}/v1/worlds/{first.get_attribute('data-id')}").json()
    names = {a["name"] for a in httpx.get(f"{server}/v1/worlds/{done['id']}/artifacts").json()["items"]}
    # The box went through ZIM: its instance mask, or (as the reference, no files for an empty layer)
    # the warning that the tiny twin's noisy matte was filtered away.
    assert "fg1_mask.png" in names or any(w.startswith("fg1: no object found") for w in done["warnings"])
    if "fg1_mask.png" in names:
        page.wait_for_selector("#downloads a:text-is('fg1_mask.png')", timeout=60_000)
    page.click(".tabs button[data-view=world]")
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    shot(page, "#world-canvas", "relayered")


def test_panorama_upload(page, server: str, tmp_path: Path) -> None:
    from tests.helpers import gradient_rgb

    (tmp_path / "notes.png").write_text("not an image")
    page.fill("textarea[name=prompt]", "")
    page.set_input_files("input[name=panorama]", str(tmp_path / "notes.png"))
    page.click("button[type=submit]")
    error = page.locator("#form-error")
    error.wait_for(state="visible")
    assert "image" in error.inner_text().lower()  # the upload's own 4xx message
    Image.fromarray(gradient_rgb(64, 128)).save(tmp_path / "pano.png")
    page.set_input_files("input[name=panorama]", str(tmp_path / "pano.png"))
    before = page.locator("#job-list li").count()
    page.click("button[type=submit]")
    page.wait_for_function(f"document.querySelectorAll('#job-list li').length > {before}")
    job_id = page.locator("#job-list li").first.get_attribute("data-id")
    page.wait_for_function("document.querySelector('#job-list li')?.dataset.status === 'succeeded'", timeout=300_000)
    job = httpx.get(f"{server}/v1/worlds/{job_id}").json()
    assert job["request"]["panorama_upload_id"] and not job["request"]["prompt"]
    panorama = httpx.get(f"{server}/v1/worlds/{job_id}/artifacts/panorama.png")
    assert np.array_equal(pixels(panorama.content), gradient_rgb(64, 128))  # our panorama, untouched
    page.set_input_files("input[name=panorama]", [])


def test_failed_job_shows_its_error(page) -> None:
    """fp8 compute is accepted by the API (the worker decides) and fails on this CPU-only worker."""
    page.fill("textarea[name=prompt]", "fp8 on a CPU")
    page.fill("input[name=height]", "64")
    page.select_option("select[name=precision]", "fp8")
    page.click("button[type=submit]")
    page.wait_for_function("document.querySelector('#job-list li')?.dataset.status === 'failed'", timeout=120_000)
    message = page.locator("#job-list li").first.locator(".error").inner_text()
    assert "needs a CUDA GPU" in message
    page.locator("#job-list li").first.click()
    assert "failed" in page.locator("#downloads").inner_text()
    page.screenshot(path=str(ARTIFACTS / "failed.png"))


def test_the_page_asks_for_a_key_once_and_keeps_it(page, tmp_path: Path, tiny_models: Path) -> None:
    """A server that needs keys: the page asks once, keeps the key as a cookie, and then lists,
    follows (event stream) and shows worlds like on loopback; a wrong key is asked for again."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(data)}
    made = subprocess.run([sys.executable, "-m", "worldgen", "keys", "create", "browser"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    key = made.stdout.strip()
    os.environ["WORLDGEN_AUTH"] = "required"
    try:
        with running_service(data, tiny_models) as url:
            assert httpx.get(f"{url}/v1/worlds").status_code == 401
            context = page.context.browser.new_context()  # the module's browser (one Playwright per process)
            try:
                keyed = context.new_page()
                answers = ["wg_wrong", key]
                asked = []

                def answer(dialog) -> None:
                    asked.append(dialog.message)
                    dialog.accept(answers.pop(0))

                keyed.on("dialog", answer)
                keyed.goto(url)
                keyed.wait_for_selector("body[data-ready='1']")
                for _ in range(100):  # the page may be ready before it asks (the list loads after)
                    if len(asked) == 2:
                        break
                    keyed.wait_for_timeout(100)
                assert len(asked) == 2 and "API key" in asked[0]  # the wrong key was refused, then asked again
                keyed.fill("textarea[name=prompt]", "a quiet harbour")
                keyed.fill("input[name=height]", "64")
                keyed.fill("input[name=steps]", "2")
                keyed.click("button[type=submit]")
                keyed.wait_for_selector("#job-list li[data-status='succeeded']", timeout=240_000)  # the stream
                keyed.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)  # an artifact
                keyed.reload()
                keyed.wait_for_selector("#job-list li[data-status='succeeded']")
                assert len(asked) == 2  # kept: not asked again
                cookie = next(c for c in keyed.context.cookies() if c["name"] == "worldgen_key")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            finally:
                context.close()
    finally:
        os.environ.pop("WORLDGEN_AUTH", None)
