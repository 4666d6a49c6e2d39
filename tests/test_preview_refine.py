"""Preview, then refine, through the real worker on tiny models: a `stage: panorama` world stops
after its panorama (with the thumbnail linked), and a world built from it with `source_world_id`
does not generate the panorama again."""

from __future__ import annotations

import hashlib
import io
import zipfile


def test_preview_then_refine(local_service) -> None:
    client, worker = local_service
    body = {"prompt": "a harbour at dusk", "seed": 4, "height": 64, "steps": 2}
    preview = client.post("/v1/worlds", json={**body, "stage": "panorama"}).json()
    assert worker.run_once()
    done = client.get(f"/v1/worlds/{preview['id']}").json()
    assert done["status"] == "succeeded", done
    names = {a["name"] for a in client.get(f"/v1/worlds/{preview['id']}/artifacts").json()["items"]}
    assert {"panorama.png", "preview.jpg", "manifest.json"} == names  # no depth, no meshes
    assert done["links"]["thumbnail"] == f"/v1/worlds/{preview['id']}/artifacts/preview.jpg"
    assert client.get(done["links"]["thumbnail"]).headers["content-type"] == "image/jpeg"
    assert "depth" not in done["timings_s"] and "panorama" in done["timings_s"]

    refined = client.post("/v1/worlds", json={"source_world_id": preview["id"], "layered": False, "height": 64}).json()
    assert refined["seed"] == 4  # the source world's seed
    assert worker.run_once()
    world = client.get(f"/v1/worlds/{refined['id']}").json()
    assert world["status"] == "succeeded", world
    assert "panorama" not in world["timings_s"] and "depth" in world["timings_s"]  # not generated again
    listing = client.get(f"/v1/worlds/{refined['id']}/artifacts").json()
    items = {a["name"]: a for a in listing["items"]}
    assert {"world.glb", "mesh_layer0.ply", "panorama.png"} <= set(items)
    panorama = [client.get(f"/v1/worlds/{w}/artifacts/panorama.png").content for w in (preview["id"], refined["id"])]
    assert panorama[0] == panorama[1]
    # what the preview left out comes from it (its steps, its prompt); the layer is named from the manifest
    assert (world["request"]["steps"], world["request"]["prompt"]) == (2, "a harbour at dusk")
    assert items["mesh_layer0.ply"]["title"] == "Background mesh (PLY)" and items["world.glb"]["group"] == "world"
    archive = client.get(listing["archive_url"])
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as files:
        folder = f"a-harbour-at-dusk-{refined['id']}"
        for name, item in items.items():
            assert hashlib.sha256(files.read(f"{folder}/{name}")).hexdigest() == item["sha256"], name
