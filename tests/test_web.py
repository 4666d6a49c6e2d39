"""The web page in a real browser (Debian's headless Chromium driven by Playwright) against
`worldgen serve` on tiny models, at a desktop (1280×900) and a phone (390×844) viewport.

Every state the page can be in is kept as a screenshot in test-artifacts/web/ (not committed):
first visit, bad input, a world being made, ready (panorama, 3D, walking, objects, downloads),
failed, canceled, and the same on a phone.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import gradient_rgb, running_service

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
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SMALL = {"height": 64, "steps": 2}  # quick tiny worlds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[str]:
    assert (ROOT / "worldgen/web/static/app.js").is_file(), "build the page first: npm --prefix web run build"
    with running_service(tmp_path_factory.mktemp("web"), tiny_models) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server: str):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def open_page(browser, server: str, viewport: dict, **options):
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    page.errors = errors
    return page


@pytest.fixture(scope="module")
def desktop(browser, server: str):
    page = open_page(browser, server, DESKTOP)
    yield page
    assert not page.errors, page.errors  # no script error in the whole module
    page.context.close()


@pytest.fixture(scope="module")
def phone(browser, server: str):
    page = open_page(browser, server, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    yield page
    assert not page.errors, page.errors
    page.context.close()


def submit(server: str, **request) -> str:
    response = httpx.post(f"{server}/v1/worlds", json=request)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for(server: str, world_id: str, *statuses: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server}/v1/worlds/{world_id}").json()
        if job["status"] in statuses:
            return job
        assert job["status"] not in ("failed", "canceled", "succeeded"), job
        time.sleep(0.5)
    raise AssertionError(f"world {world_id} did not reach {statuses}")


def upload(server: str, name: str, data: bytes, kind: str) -> str:
    response = httpx.post(f"{server}/v1/uploads", files={"file": (name, data)}, data={"kind": kind})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def ready_world(server: str) -> dict:
    """A layered world with all three formats and a warning (a negative prompt without true CFG)."""
    world_id = submit(server, prompt="a mountain lake at dawn", negative_prompt="people", formats=["glb", "ply", "drc"],
                      **SMALL)  # fmt: skip
    return wait_for(server, world_id, "succeeded")


@pytest.fixture(scope="module")
def grey_world(server: str) -> dict:
    """A uniform sRGB-128 panorama on a sphere 2 units away: one background mesh, all grey."""
    panorama = upload(server, "grey.png", png(np.full((64, 128, 3), 128, np.uint8)), "panorama")
    buffer = io.BytesIO()
    np.save(buffer, np.full((64, 128), 2.0, np.float32))
    distance = upload(server, "grey.npy", buffer.getvalue(), "distance")
    world_id = submit(server, panorama_upload_id=panorama, distance_upload_id=distance, layered=False,
                      depth_compression=False)  # fmt: skip
    return wait_for(server, world_id, "succeeded")


@pytest.fixture(scope="module")
def failed_world(server: str) -> dict:
    """fp8 compute is accepted by the API (the worker decides) and fails on this CPU-only worker."""
    return wait_for(server, submit(server, prompt="fp8 on a CPU", precision="fp8", **SMALL), "failed")


def pixels(png_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")).astype(int)


def shot(page, selector: str | None, name: str) -> np.ndarray:
    """A screenshot kept in test-artifacts/web/: of one element, or (None) of the viewport.
    A passing notice ("… is ready") is put away first when only an element is wanted."""
    if selector:
        page.evaluate("document.querySelector('#toast').hidden = true")
    data = page.locator(selector).screenshot() if selector else page.screenshot()
    (ARTIFACTS / f"{name}.png").write_bytes(data)
    return pixels(data)


def click_and_follow(page, button: str) -> str:
    """Click a button that makes a new world; wait until the viewer has opened it (until then the
    viewer still shows the previous world, whose state must not be mistaken for the new one's)."""
    before = page.locator("#viewer").get_attribute("data-id") or ""
    page.click(button)
    page.wait_for_function(f"(document.querySelector('#viewer').dataset.id || '') !== '{before}'")
    return page.locator("#viewer").get_attribute("data-id")


STAGE_WORDS = {
    "loading_models": "loading models", "panorama": "painting the panorama", "layers": "separating layers",
    "depth": "estimating depth", "mesh": "building meshes", "export": "writing files", "upload": "saving files",
}  # fmt: skip
"""web/src/format.js's stage names, as a sentence says them."""


def open_world(page, world_id: str) -> None:
    item = page.locator(f"#job-list li[data-id='{world_id}']")
    item.wait_for()
    item.click()
    page.wait_for_selector(f"#viewer[data-id='{world_id}']")


def camera(page) -> np.ndarray:
    return np.array([float(v) for v in page.locator("#world-canvas").get_attribute("data-camera").split(",")])


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"


# --- First visit ------------------------------------------------------------------------------


def test_first_visit_explains_itself(desktop, phone, server: str) -> None:
    """An empty list says what to do; the tiny-models banner says the output is noise; Generate is
    in the first screen, with the expert settings folded away."""
    for page, name in ((desktop, "desktop"), (phone, "phone")):
        assert page.locator("#jobs-empty").is_visible()
        assert "No worlds yet" in page.locator("#jobs-empty").inner_text()
        banner = page.locator("#tiny-banner")
        assert banner.is_visible() and "noise" in banner.inner_text()
        button = page.locator("#world-form button.primary[type=submit]")
        box = button.bounding_box()
        assert button.is_visible() and box["y"] + box["height"] <= page.viewport_size["height"]
        assert not page.locator("input[name=true_cfg_scale]").is_visible()  # under "Advanced settings"
        assert not page.locator("select[name=step_cache]").is_visible()
        # The defaults this server applies (GET /v1/info: the tiny models' 128 px) are shown, not 960.
        info = httpx.get(f"{server}/v1/info").json()
        assert info["models"]["tiny"] and info["defaults"]["height"] == 128
        # the value alone (it read "128 (test models)", clipped in the narrow field); the tooltip says why
        assert page.locator("input[name=height]").get_attribute("placeholder") == str(info["defaults"]["height"])
        assert "tiny test models" in page.locator("input[name=height]").get_attribute("title")
        # A row's fields line up (a label that wrapped to two lines pushed its field down).
        tops = {page.locator(f"[name={n}]").bounding_box()["y"] for n in ("scene", "labels_fg1")}
        assert len(tops) == 1, tops
        no_horizontal_scroll(page)
        shot(page, None, f"{name}-first-visit")


def test_bad_input_is_shown_once_beside_its_field(desktop) -> None:
    page = desktop
    page.fill("textarea[name=prompt]", "a lake")
    page.click("#advanced-options summary")
    tops = {page.locator(f"input[name={name}]").bounding_box()["y"] for name in ("height", "steps", "seed")}
    assert len(tops) == 1, tops  # a row's inputs line up (a two-line label pushed one down)
    page.fill("input[name=height]", "100")
    page.click("#world-form button.primary")
    summary = page.locator("#form-error")
    summary.wait_for(state="visible")
    height = page.locator("input[name=height]")
    assert height.get_attribute("aria-invalid") == "true"
    assert "multiple of 16" in page.locator(".field-error[data-for=height]").inner_text()
    # Said once: the field's message is not repeated in the summary or anywhere else.
    assert page.get_by_text("multiple of 16").count() == 1
    assert "marked field" in summary.inner_text()
    shot(page, None, "desktop-bad-input")
    page.fill("input[name=height]", "")  # typing clears the mark
    assert height.get_attribute("aria-invalid") is None
    page.fill("textarea[name=prompt]", "")
    page.click("#world-form button.primary")
    page.wait_for_selector("textarea[name=prompt][aria-invalid='true']")
    assert "prompt must not be blank" in page.locator(".field-error[data-for=prompt]").inner_text()


# --- Making a world ---------------------------------------------------------------------------


def test_a_world_is_followed_until_it_opens(desktop, server: str) -> None:
    """Submitting opens the world at once with its live progress; the list marks it; when it is
    done the viewer shows it, a notice says so, and the list reads "Ready", not "succeeded · upload"."""
    page = desktop
    page.fill("textarea[name=prompt]", "a quiet harbour at dusk")
    page.fill("input[name=height]", "64")
    page.fill("input[name=steps]", "2")
    world_id = click_and_follow(page, "#world-form button.primary")
    page.wait_for_selector(f"#viewer[data-id='{world_id}'][data-state='active']")
    item = page.locator(f"#job-list li[data-id='{world_id}']")
    assert item.get_attribute("aria-current") == "true" and "open" in item.get_attribute("class")
    assert page.locator("#viewer-title").inner_text() == "a quiet harbour at dusk"
    assert page.locator("#viewer-progress").is_visible() and page.locator("#cancel-world").is_visible()
    seen = set()
    deadline = time.monotonic() + 240
    while page.locator("#viewer").get_attribute("data-state") == "active" and time.monotonic() < deadline:
        seen.add(page.locator("#progress-stage").inner_text())
        if len(seen) == 2:
            shot(page, None, "desktop-making")
        page.wait_for_timeout(100)
    assert len(seen) >= 3, seen  # the stage line moves while the world is made
    page.wait_for_selector("#viewer[data-state='succeeded']")
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    assert page.locator("#toast").is_visible() and "is ready" in page.locator("#toast").inner_text()
    assert item.locator(".status").inner_text() == "Ready"
    assert "upload" not in item.inner_text()
    assert not page.locator("#viewer-progress").is_visible() and page.locator("#delete-world").is_visible()
    shot(page, None, "desktop-ready")


def test_a_panorama_preview_then_its_world(desktop, server: str) -> None:
    """ "Panorama only" makes the quick preview; "Build the 3D world" builds the world from it
    without painting the panorama again."""
    page = desktop
    page.fill("textarea[name=prompt]", "a desert canyon")
    page.fill("input[name=height]", "64")
    page.fill("input[name=steps]", "2")
    preview_id = click_and_follow(page, "#preview-only")
    page.wait_for_selector(f"#viewer[data-id='{preview_id}'][data-state='succeeded']", timeout=240_000)
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    assert "Panorama ready" in page.locator("#viewer-sub").inner_text()
    assert not page.locator(".tabs button[data-view=world]").is_visible()  # no world yet
    shot(page, None, "desktop-panorama-preview")
    world_id = click_and_follow(page, "#build-world")
    assert page.locator("#viewer-title").inner_text() == "a desert canyon"
    job = wait_for(server, world_id, "succeeded")
    assert job["request"]["source_world_id"] == preview_id and "panorama" not in job["timings_s"]
    page.wait_for_selector(f"#viewer[data-id='{world_id}'][data-state='succeeded']", timeout=60_000)
    assert page.locator(".tabs button[data-view=world]").is_visible()


def test_warnings_reach_the_page(desktop, ready_world: dict) -> None:
    page = desktop
    warning = "negative_prompt has no effect unless true_cfg_scale > 1"
    assert any(w.startswith(warning) for w in ready_world["warnings"])
    open_world(page, ready_world["id"])
    # The page learns of the world's end from its event stream, which can trail the API's answer.
    page.wait_for_selector(f"#viewer[data-id='{ready_world['id']}'][data-state='succeeded']", timeout=30_000)
    assert warning in page.locator("#warnings").inner_text()
    assert "1 warning" in page.locator(f"#job-list li[data-id='{ready_world['id']}'] .chip.warning").inner_text()


def test_titles_are_words_not_ids(desktop, grey_world: dict, ready_world: dict) -> None:
    page = desktop
    item = page.locator(f"#job-list li[data-id='{grey_world['id']}']")
    item.wait_for()
    assert item.locator(".world-title").inner_text() == "Uploaded panorama"
    open_world(page, grey_world["id"])
    assert page.locator("#viewer-title").inner_text() == "Uploaded panorama"
    assert ready_world["id"] not in page.locator("#job-list").inner_text()


# --- Viewing a world --------------------------------------------------------------------------


def test_a_grey_panorama_is_the_same_grey_in_both_viewers(desktop, grey_world: dict) -> None:
    """glTF vertex colours are linear: world.glb stores sRGB 128 as linear 0.216, and the 3D view
    writes it back to the screen as 128 — the panorama view's 128, not the washed-out 188."""
    page = desktop
    open_world(page, grey_world["id"])
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    panorama = shot(page, "#panorama-canvas", "grey-panorama-view")
    page.click(".tabs button[data-view=world]")
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    page.wait_for_timeout(300)
    world = shot(page, "#world-canvas", "grey-world-view")
    for image in (panorama, world):
        centre = image[image.shape[0] // 4 : -image.shape[0] // 4, image.shape[1] // 4 : -image.shape[1] // 4]
        assert np.abs(centre.reshape(-1, 3).mean(axis=0) - 128).max() <= 3, centre.reshape(-1, 3).mean(axis=0)


def test_orbit_zooms_and_walking_is_per_second_and_stops_at_walls(desktop, grey_world: dict) -> None:
    page = desktop
    open_world(page, grey_world["id"])
    page.click(".tabs button[data-view=world]")
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    canvas = page.locator("#world-canvas")
    radius = float(canvas.get_attribute("data-radius"))
    assert 1.9 < radius < 2.1  # the grey sphere is 2 units away
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    start = np.linalg.norm(camera(page))
    for _ in range(4):
        page.mouse.wheel(0, 400)
        page.wait_for_timeout(80)
    assert np.linalg.norm(camera(page)) > 1.3 * start  # the wheel really moves the camera

    page.check("input[name=nav][value=walk]", force=True)
    assert page.locator("#walk-pad").is_visible()
    assert np.allclose(camera(page), 0)
    speed = float(canvas.get_attribute("data-walk-speed"))
    # Typing in the prompt does not walk.
    page.fill("textarea[name=prompt]", "")
    page.click("textarea[name=prompt]")
    page.keyboard.type("www")
    page.wait_for_timeout(300)
    assert np.allclose(camera(page), 0) and page.locator("textarea[name=prompt]").input_value() == "www"
    page.fill("textarea[name=prompt]", "")
    # Held for about a second, "w" walks about `speed` units, whatever the frame rate.
    canvas.click()
    began = time.monotonic()
    page.keyboard.down("w")
    page.wait_for_timeout(1000)
    page.keyboard.up("w")
    held = time.monotonic() - began
    walked = np.linalg.norm(camera(page))
    assert 0.5 * speed * held < walked < 1.3 * speed * held, (walked, speed, held)
    shot(page, "#world-canvas", "desktop-walk")
    # Walking on for longer stops short of the wall, 2 units away.
    page.keyboard.down("w")
    page.wait_for_timeout(int(1000 * 2.2 / speed))
    page.keyboard.up("w")
    stopped = np.linalg.norm(camera(page))
    assert 1.8 < stopped < 2.0, stopped
    page.check("input[name=nav][value=orbit]", force=True)


def test_layers_toggle_and_the_full_world_loads(desktop, ready_world: dict, server: str) -> None:
    page = desktop
    open_world(page, ready_world["id"])
    page.click(".tabs button[data-view=world]")
    page.check("input[name=nav][value=orbit]", force=True)
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    page.wait_for_timeout(300)
    assert shot(page, "#world-canvas", "desktop-world").std() > 5
    toggles = page.locator("#layer-toggles input")
    names = [toggles.nth(i).get_attribute("data-layer") for i in range(toggles.count())]
    assert "background" in names and "sky" in names
    for name in names:
        page.uncheck(f"#layer-toggles input[data-layer={name}]")
    page.wait_for_timeout(300)
    inner = shot(page, "#world-canvas", "desktop-world-all-hidden")[10:-10, 10:-10]
    assert np.abs(inner - np.array([0x0F, 0x14, 0x22])).max() <= 2  # only the scene background is left
    page.click("#load-full")
    page.wait_for_selector("#load-full:text('Full-detail world loaded')", timeout=60_000)
    assert page.locator("#layer-toggles input").count() == len(names)


def test_a_failed_world_replaces_the_previous_one(desktop, ready_world: dict, failed_world: dict) -> None:
    """Opening a failed world clears the panorama, the 3D world, its toggles and its files —
    also when the previous world's files are still loading."""
    page = desktop
    open_world(page, ready_world["id"])
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    for quick in (False, True):
        open_world(page, ready_world["id"])
        if not quick:
            page.wait_for_selector("#world-canvas[data-loaded='1']", state="attached", timeout=60_000)
        open_world(page, failed_world["id"])  # quick: while the ready world is still loading
        page.wait_for_timeout(1500)
        assert page.locator("#viewer").get_attribute("data-state") == "failed"
        assert not page.locator("#viewer-ready").is_visible()
        assert page.locator("#panorama-canvas").get_attribute("data-loaded") == ""
        assert page.locator("#world-canvas").get_attribute("data-loaded") == ""
        assert page.locator("#layer-toggles input").count() == 0
        assert page.locator("#downloads li").count() == 0
        assert page.locator("#load-full").is_disabled()
    failed = page.locator("#viewer-failed")
    assert "needs a CUDA GPU" in failed.inner_text()
    assert "could not be made: it failed while loading models." in failed.inner_text()
    assert page.locator("#viewer-sub").inner_text() == "Failed · while loading models"  # the verb once
    assert page.locator(f"#job-list li[data-id='{failed_world['id']}'] .status").inner_text() == "Failed"
    shot(page, None, "desktop-failed")


def test_drawing_boxes_to_relayer(desktop, ready_world: dict, server: str) -> None:
    """Draw first, then name: the new box's name field takes the typing. Boxes can be removed, and
    letting go of the mouse outside the panorama still ends the box (no stuck rubber band)."""
    page = desktop
    open_world(page, ready_world["id"])
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    page.click(".tabs button[data-view=boxes]")
    assert page.locator("#relayer").is_disabled()
    canvas = page.locator("#box-canvas")
    box = canvas.bounding_box()

    def drag(x0: float, y0: float, x1: float, y1: float) -> None:
        page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * x1, box["y"] + box["height"] * y1, steps=5)
        page.mouse.up()

    drag(0.2, 0.3, 0.45, 0.8)
    page.keyboard.type("rock")
    assert page.locator("#box-list li").count() == 1
    assert page.locator("#box-list li input").input_value() == "rock"
    drag(0.6, 0.2, 1.3, 1.4)  # let go far outside the canvas: the box ends at its edge
    assert page.locator("#box-list li").count() == 2
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.wait_for_timeout(100)
    page.locator("#box-list li").nth(1).locator("select").select_option("fg2")
    shot(page, "#boxes-view", "desktop-boxes")
    page.locator("#box-list li").nth(1).locator("button").click()  # remove it again
    assert page.locator("#box-list li").count() == 1
    new_id = click_and_follow(page, "#relayer")
    job = httpx.get(f"{server}/v1/worlds/{new_id}").json()
    (rock,) = job["request"]["objects_fg1"]
    expected = [0.2 * 128, 0.3 * 64, 0.45 * 128, 0.8 * 64]  # in the 128×64 panorama's pixels
    assert rock["label"] == "rock" and np.abs(np.array(rock["box"]) - expected).max() <= 2
    assert job["request"]["objects_fg2"] == []
    assert sorted(job["request"]["formats"]) == ["drc", "glb", "ply"]  # the source world's formats
    assert page.locator("#viewer-title").inner_text() == "Re-layered: a mountain lake at dawn"
    wait_for(server, new_id, "succeeded")
    page.wait_for_selector(f"#viewer[data-id='{new_id}'][data-state='succeeded']", timeout=60_000)
    names = {a["name"] for a in httpx.get(f"{server}/v1/worlds/{new_id}/artifacts").json()["items"]}
    assert any(name.endswith(".drc") for name in names)


def test_downloads_read_like_a_product(desktop, ready_world: dict, server: str) -> None:
    page = desktop
    open_world(page, ready_world["id"])
    page.wait_for_selector("#downloads li")
    items = page.locator("#downloads li")
    artifacts = httpx.get(f"{server}/v1/worlds/{ready_world['id']}/artifacts").json()["items"]
    assert items.count() == len(artifacts)
    text = page.locator("#downloads").inner_text()
    assert "0.00 MB" not in text
    world = page.locator("#downloads li[data-name='world.glb']")
    assert (
        world.locator("a").inner_text() != "world.glb" and world.locator("p").inner_text()
    )  # a title and a description
    for artifact in artifacts:
        assert artifact["title"] and artifact["description"], artifact
    href = page.locator("#download-all").get_attribute("href")
    archive = httpx.get(server + href)
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert {name.split("/")[-1] for name in zipped.namelist()} == {a["name"] for a in artifacts}
    page.locator("#downloads").scroll_into_view_if_needed()
    shot(page, None, "desktop-downloads")


def test_cancel_then_delete(desktop, server: str, ready_world: dict) -> None:
    """A canceled world says where it stopped (it read "Canceled · canceled"): one canceled while
    it waited behind another (the worker makes one world at a time), one while it was being made."""
    page = desktop
    world_id = submit(server, prompt="a very long world", height=512, steps=50)  # minutes on this CPU
    behind = submit(server, prompt="a world behind it", height=64, steps=1)
    wait_for(server, world_id, "running")  # the worker has it, so `behind` waits in the queue
    open_world(page, behind)
    page.wait_for_selector("#viewer[data-state='active']")
    page.click("#cancel-world")
    page.wait_for_selector("#viewer[data-state='canceled']", timeout=60_000)
    assert page.locator("#viewer-failed").inner_text() == "This world was canceled before it started."
    assert page.locator("#viewer-sub").inner_text() == "Canceled · before it started"
    assert page.locator(f"#job-list li[data-id='{behind}'] .detail").inner_text() == "before it started"
    assert httpx.delete(f"{server}/v1/worlds/{behind}").status_code == 200
    open_world(page, world_id)
    page.wait_for_selector("#viewer[data-state='active']")
    page.click("#cancel-world")
    page.wait_for_selector("#viewer[data-state='canceled']", timeout=60_000)
    stopped = httpx.get(f"{server}/v1/worlds/{world_id}").json()
    where = f"while {STAGE_WORDS[stopped['stage']]} ({round(100 * stopped['progress'])}%)"
    assert page.locator("#viewer-failed").inner_text() == f"This world was canceled {where}."
    assert page.locator("#viewer-sub").inner_text() == f"Canceled · {where}"
    item = page.locator(f"#job-list li[data-id='{world_id}']")
    assert item.locator(".status").inner_text() == "Canceled"
    assert item.locator(".detail").inner_text() == where
    shot(page, None, "desktop-canceled")
    page.click("#delete-world")
    assert page.locator("#delete-world").inner_text() == "Delete for good?"
    page.click("#delete-world")
    page.wait_for_selector(f"#job-list li[data-id='{world_id}']", state="detached")
    assert page.locator("#viewer").get_attribute("data-state") == "empty"
    assert httpx.get(f"{server}/v1/worlds/{world_id}").status_code == 410


# --- Phone ------------------------------------------------------------------------------------


def test_phone_stacks_and_walks_by_touch(phone, ready_world: dict) -> None:
    page = phone
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    no_horizontal_scroll(page)
    create, jobs = page.locator("#create").bounding_box(), page.locator("#jobs").bounding_box()
    assert create["x"] == jobs["x"] and jobs["x"] + jobs["width"] <= PHONE["width"]  # one column
    shot(page, None, "phone-list")
    page.locator(f"#job-list li[data-id='{ready_world['id']}']").tap()
    page.wait_for_selector("#panorama-canvas[data-loaded='1']", timeout=60_000)
    viewer = page.locator("#viewer").bounding_box()
    assert viewer["x"] + viewer["width"] <= PHONE["width"]
    page.wait_for_timeout(800)  # the viewer scrolls into view
    assert page.evaluate("document.querySelector('#viewer').getBoundingClientRect().top") < PHONE["height"] / 2
    no_horizontal_scroll(page)
    shot(page, None, "phone-ready")
    tabs = page.locator(".tabs button")
    assert len({tabs.nth(i).bounding_box()["y"] for i in range(tabs.count())}) == 1  # one row of tabs
    page.locator(".tabs button[data-view=world]").tap()
    page.wait_for_selector("#world-canvas[data-loaded='1']", timeout=60_000)
    page.locator(".segmented label", has_text="Walk").tap()
    pad = page.locator("#walk-pad")
    assert pad.is_visible()
    forward = pad.locator("[data-key=w]")
    forward.dispatch_event("pointerdown", {"pointerType": "touch", "isPrimary": True})
    page.wait_for_timeout(600)
    forward.dispatch_event("pointerup", {"pointerType": "touch", "isPrimary": True})
    assert np.linalg.norm(camera(page)) > 0.05  # the pad walks
    no_horizontal_scroll(page)
    shot(page, None, "phone-walk")


# --- Uploads and keys -------------------------------------------------------------------------


def test_panorama_upload(desktop, server: str, tmp_path: Path) -> None:
    page = desktop
    (tmp_path / "notes.png").write_text("not an image")
    page.fill("textarea[name=prompt]", "")
    page.click("#source-options summary")
    page.set_input_files("input[name=panorama]", str(tmp_path / "notes.png"))
    page.click("#world-form button.primary")
    page.wait_for_selector("input[name=panorama][aria-invalid='true']")
    assert "image" in page.locator(".field-error[data-for=panorama_upload_id]").inner_text().lower()
    Image.fromarray(gradient_rgb(64, 128)).save(tmp_path / "pano.png")
    page.set_input_files("input[name=panorama]", str(tmp_path / "pano.png"))
    page.click("#world-form button.primary")
    page.wait_for_function("document.querySelector('#viewer').dataset.state === 'active'")
    job_id = page.locator("#viewer").get_attribute("data-id")
    wait_for(server, job_id, "succeeded")
    job = httpx.get(f"{server}/v1/worlds/{job_id}").json()
    assert job["request"]["panorama_upload_id"] and not job["request"]["prompt"]
    panorama = httpx.get(f"{server}/v1/worlds/{job_id}/artifacts/panorama.png")
    assert np.array_equal(pixels(panorama.content), gradient_rgb(64, 128))  # our panorama, untouched
    page.set_input_files("input[name=panorama]", [])


def test_the_page_asks_for_a_key_once_and_keeps_it(browser, tmp_path: Path, tiny_models: Path) -> None:
    """A server that needs keys: the page asks once, keeps the key as a cookie, and then lists,
    follows (event stream) and shows worlds like on loopback; a wrong key is asked for again."""
    data = tmp_path / "data"
    env = {**os.environ, "WORLDGEN_DATA_DIR": str(data)}
    made = subprocess.run([sys.executable, "-m", "worldgen", "keys", "create", "browser"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    key = made.stdout.strip()
    os.environ["WORLDGEN_AUTH"] = "required"
    try:
        with running_service(data, tiny_models) as url:
            assert httpx.get(f"{url}/v1/worlds").status_code == 401
            context = browser.new_context(viewport=DESKTOP)
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
                assert keyed.locator("#tiny-banner").is_visible()  # /v1/info with the cookie
                keyed.fill("textarea[name=prompt]", "a quiet harbour")
                keyed.click("#world-form button.primary")
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
