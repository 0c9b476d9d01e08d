"""Prompt -> scene over the real server: jobs, the GLB (Khronos validator, trimesh), layout, edits, keys, errors.

One server for the module with the models a scene needs (minilm, terrain-gan); every
test reads real GLB bytes back from it.
"""

from __future__ import annotations

import io
import time
from itertools import combinations

import httpx
import numpy as np
import pytest
import trimesh
from shapely.geometry import MultiPoint

from tests.conftest import cli, start_server
from tests.session_client import SessionClient
from tests.worlds.gltf import validate

CAMP = "a lakeside camp with three tents, a campfire and a signpost saying Welcome"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("worlds")
    srv = start_server(tmp, "--only", "minilm", "--only", "terrain-gan", "--only", "terrain-vae", admin_key=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(worlds) -> httpx.Client:
    with worlds.client() as c:
        yield c


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        seen.append(job["progress"])
        assert 0.0 <= job["progress"] <= 1.0
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert seen == sorted(seen), f"progress went backwards: {seen}"
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def make_scene(client: httpx.Client, prompt: str, seed: int = 0) -> tuple[dict, bytes, dict]:
    accepted = client.post("/v1/scenes", json={"prompt": prompt, "seed": seed})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] == "queued" and body["id"].startswith("job_") and body["scene_id"].startswith("scn_")
    job = wait_job(client, body["id"])
    assert job["status"] == "succeeded", job
    glb = client.get(job["result_url"])
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    graph = client.get(f"/v1/scenes/{job['scene_id']}").raise_for_status().json()
    return job, glb.content, graph


@pytest.fixture(scope="module")
def camp(client):
    return make_scene(client, CAMP)


def load(glb: bytes) -> trimesh.Scene:
    return trimesh.load(io.BytesIO(glb), file_type="glb")


def gltf_nodes(glb: bytes) -> dict[str, dict]:
    from pygltflib import GLTF2

    gltf = GLTF2.load_from_bytes(glb)
    return {
        n.name: {"extras": n.extras or {}, "translation": n.translation, "children": n.children} for n in gltf.nodes
    }


def world_vertices(scene: trimesh.Scene, node: str) -> np.ndarray:
    transform, geometry = scene.graph[node]
    mesh = scene.geometry[geometry]
    return trimesh.transform_points(mesh.vertices, transform)


def terrain_height(scene: trimesh.Scene, node: str, x: float, z: float) -> float:
    """The surface height of a node's mesh straight below (x, z): the triangle containing the point, in x/z."""
    _, geometry = scene.graph[node]
    tri = world_vertices(scene, node)[scene.geometry[geometry].faces]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = b[:, [0, 2]] - a[:, [0, 2]], c[:, [0, 2]] - a[:, [0, 2]]
    v2 = np.array([x, z]) - a[:, [0, 2]]
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    ok = np.abs(det) > 1e-12
    u = np.where(ok, (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / np.where(ok, det, 1), -1)
    v = np.where(ok, (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / np.where(ok, det, 1), -1)
    inside = (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9)
    assert inside.any(), f"no {node} under ({x:.2f}, {z:.2f})"
    heights = a[inside, 1] + u[inside] * (b[inside, 1] - a[inside, 1]) + v[inside] * (c[inside, 1] - a[inside, 1])
    return float(heights.max())


# -- the example from the issue --------------------------------------------------------------------


def test_prompt_becomes_a_valid_glb_with_the_objects_asked_for(camp):
    job, glb, graph = camp
    report = validate(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]
    scene = load(glb)
    assert len(scene.geometry) > 5
    nodes = gltf_nodes(glb)
    objects = {name: n for name, n in nodes.items() if "category" in n["extras"]}
    categories = [n["extras"]["category"] for n in objects.values()]
    assert categories.count("tent") == 3
    assert categories.count("campfire") == 1
    assert categories.count("sign") == 1
    for name, node in objects.items():
        extras = node["extras"]
        assert name.startswith(extras["category"]), name
        assert extras["asset"] and extras["word"]
    # the graph says the same as the file
    assert sorted(o["category"] for o in graph["objects"]) == sorted(categories)
    assert graph["revision"] == 1 and job["revision"] == 1


def test_label_nodes_carry_the_text_and_only_they_do(camp):
    _, glb, graph = camp
    nodes = gltf_nodes(glb)
    labels = {name: n for name, n in nodes.items() if "text" in n["extras"]}
    assert labels and all(name.startswith("label") for name in labels)
    assert "Welcome" in [n["extras"]["text"] for n in labels.values()]
    assert [entry["text"] for entry in graph["labels"]] == [n["extras"]["text"] for n in labels.values()]
    # the label is real geometry (a textured quad), not only a string
    scene = load(glb)
    label = next(iter(labels))
    assert len(scene.geometry[scene.graph[label][1]].faces) >= 2


def test_no_two_objects_overlap(camp):
    _, glb, graph = camp
    scene = load(glb)
    stacked = {(o["name"], o["on"]) for o in graph["objects"] if o["on"]}
    hulls = {o["name"]: MultiPoint(world_vertices(scene, o["name"])[:, [0, 2]]).convex_hull for o in graph["objects"]}
    for (a, ha), (b, hb) in combinations(hulls.items(), 2):
        if (a, b) in stacked or (b, a) in stacked:
            continue
        assert ha.intersection(hb).area < 1e-6, f"{a} overlaps {b}"


def test_every_object_rests_on_the_terrain(camp):
    _, glb, graph = camp
    scene = load(glb)
    for o in graph["objects"]:
        if o["on"]:
            continue
        x, y, z = o["position"]
        ground = terrain_height(scene, "terrain", x, z)
        if o["category"] == "water":  # its surface lies at the shore's level, over a bed dug below it
            assert ground < y - 0.3, o["name"]
        else:
            assert abs(ground - y) < 0.03, o["name"]
        # and the node in the file stands where the graph says
        base = world_vertices(scene, o["name"])
        assert base[:, 1].min() == pytest.approx(y, abs=0.06), o["name"]


def test_water_lies_low_and_the_spawn_point_is_on_walkable_ground(camp):
    _, glb, graph = camp
    scene = load(glb)
    x, y, z = graph["spawn"]["position"]
    assert abs(terrain_height(scene, "navmesh", x, z) - y) < 0.03
    lakes = [o for o in graph["objects"] if o["category"] == "water"]
    assert lakes, "a lakeside camp has a lake"
    terrain = world_vertices(scene, "terrain")
    assert lakes[0]["position"][1] < np.median(terrain[:, 1]), "the lake is on low ground"


def test_same_prompt_and_seed_give_the_same_bytes_and_another_seed_does_not(client, camp):
    _, glb, _ = camp
    _, again, _ = make_scene(client, CAMP, seed=0)
    assert again == glb
    _, other, _ = make_scene(client, CAMP, seed=7)
    assert other != glb


def test_an_edit_changes_only_what_it_names(client, camp):
    job, _, before = camp
    scene_id = job["scene_id"]
    edit = client.post(f"/v1/scenes/{scene_id}/edit", json={"prompt": "add two lamps next to the tent"})
    assert edit.status_code == 202, edit.text
    assert wait_job(client, edit.json()["id"])["status"] == "succeeded"
    after = client.get(f"/v1/scenes/{scene_id}").json()
    assert after["revision"] == 2
    old = {o["name"]: o for o in before["objects"]}
    new = {o["name"]: o for o in after["objects"]}
    for name, o in old.items():
        assert new[name]["position"] == o["position"] and new[name]["yaw"] == o["yaw"], name
    added = [o for name, o in new.items() if name not in old]
    assert [o["category"] for o in added] == ["lamp", "lamp"]
    glb = client.get(f"/v1/scenes/{scene_id}/glb").content
    assert validate(glb)["issues"]["numErrors"] == 0

    removal = client.post(f"/v1/scenes/{scene_id}/edit", json={"prompt": "remove the campfire"})
    assert wait_job(client, removal.json()["id"])["status"] == "succeeded"
    final = {o["name"]: o for o in client.get(f"/v1/scenes/{scene_id}").json()["objects"]}
    assert not [o for o in final.values() if o["category"] == "campfire"]
    assert set(final) == set(new) - {o["name"] for o in new.values() if o["category"] == "campfire"}
    for name, o in final.items():
        assert o["position"] == new[name]["position"], name


def test_an_unknown_thing_becomes_a_labelled_placeholder_and_is_reported(client):
    _, glb, graph = make_scene(client, "a dragon next to two tents")
    assert "dragon" in graph["unmatched"]
    nodes = gltf_nodes(glb)
    placeholders = [n for n in nodes.values() if n["extras"].get("category") == "placeholder"]
    assert len(placeholders) == 1
    assert "dragon" in [n["extras"]["text"] for n in nodes.values() if "text" in n["extras"]]


def test_the_jobs_stream_pushes_progress_then_done(worlds, client):
    accepted = client.post("/v1/scenes", json={"prompt": "a bench under an oak", "seed": 3}).json()
    with SessionClient(worlds.url, worlds.admin_key) as session:
        opened = session.open("j", "jobs", job=accepted["id"])
        assert opened["job"] == accepted["id"]
        done = session.wait_type("done", timeout=60, stream="j")
        assert done["result_url"] == f"/v1/jobs/{accepted['id']}/result" and done["progress"] == 1.0
        session.send({"type": "open", "stream": "k", "kind": "jobs", "job": "job_nope"})
        assert session.wait_type("error", timeout=10)["status"] == 404


# -- keys, cancelling, bad input ----------------------------------------------------------------------


def test_jobs_and_scenes_belong_to_their_key(worlds, client, camp):
    job, _, _ = camp
    other = cli("keys", "create", "--scope", "worlds", "--quiet", data_dir=worlds.data_dir).stdout.strip()
    outsider = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=worlds.data_dir).stdout.strip()
    with worlds.client(other) as c:
        for path in (f"/v1/jobs/{job['id']}", f"/v1/scenes/{job['scene_id']}", f"/v1/scenes/{job['scene_id']}/glb"):
            response = c.get(path)
            assert response.status_code == 404, path
            assert "no " in response.json()["error"]["message"]
    with worlds.client(outsider) as c:
        response = c.post("/v1/scenes", json={"prompt": "a tent"})
        assert response.status_code == 403 and "worlds" in response.json()["error"]["message"]


def test_a_queued_job_can_be_cancelled_and_has_no_result(client):
    first = client.post("/v1/scenes", json={"prompt": "a forest of forty pines", "seed": 11}).json()
    second = client.post("/v1/scenes", json={"prompt": "a tent", "seed": 12}).json()
    early = client.get(f"/v1/jobs/{second['id']}/result")
    assert early.status_code == 409 and "queued" in early.json()["error"]["message"]
    cancelled = client.delete(f"/v1/jobs/{second['id']}").json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{second['id']}").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{second['id']}/result").status_code == 409
    assert wait_job(client, first["id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/scenes", {"prompt": ""}, 400, "prompt"),
        ("/v1/scenes", {"prompt": "   "}, 400, "empty"),
        ("/v1/scenes", {"prompt": "a tent " * 400}, 400, "prompt"),
        ("/v1/scenes", {"prompt": "a camp with 400 tents"}, 400, "at most"),
        ("/v1/scenes", {"prompt": "a tent", "seed": -1}, 400, "seed"),
        ("/v1/scenes", {"prompt": "a tent", "colour": "red"}, 400, "colour"),
        ("/v1/scenes", {"prompt": "a tent", "extractor": "magic"}, 400, "extractor"),
        ("/v1/scenes/scn_nope/edit", {"prompt": "add a tent"}, 404, "scn_nope"),
        ("/v1/jobs/job_nope", None, 404, "job_nope"),
        ("/v1/scenes/scn_nope", None, 404, "scn_nope"),
        ("/v1/scenes/scn_nope/glb", None, 404, "scn_nope"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(client, path, body, status, words):
    response = client.post(path, json=body) if body is not None else client.get(path)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_an_edit_that_names_nothing_or_something_absent_is_refused(client, camp):
    job, _, _ = camp
    vague = client.post(f"/v1/scenes/{job['scene_id']}/edit", json={"prompt": "very nice"})
    assert vague.status_code == 400 and "add" in vague.json()["error"]["message"]
    absent = client.post(f"/v1/scenes/{job['scene_id']}/edit", json={"prompt": "remove the windmill"})
    failed = wait_job(client, absent.json()["id"])
    assert failed["status"] == "failed" and "windmill" in failed["error"]


# -- POST /v1/terrain over HTTP -----------------------------------------------------------------------


def test_terrain_glb_heights_equal_the_heightmap_and_png16_agrees(client):
    spec = {"seed": 5, "size": 65, "extent_m": 300.0, "height_scale": 2.0}
    glb = client.post("/v1/terrain", json={**spec, "format": "glb"})
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert validate(glb.content)["issues"]["numErrors"] == 0
    raw = client.post("/v1/terrain", json={**spec, "format": "f32"})
    assert raw.headers["x-size"] == "65"
    heights = np.frombuffer(raw.content, "<f4").reshape(65, 65)
    scene = load(glb.content)
    vertices = world_vertices(scene, "terrain")
    step = 300.0 / 64
    rows = np.rint((vertices[:, 2] + 150.0) / step).astype(int)
    cols = np.rint((vertices[:, 0] + 150.0) / step).astype(int)
    np.testing.assert_allclose(vertices[:, 1], heights[rows, cols], atol=1e-4)
    png = client.post("/v1/terrain", json={**spec, "format": "png16"})
    assert png.headers["content-type"] == "image/png"
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png.content)), dtype=np.float64)
    low, high = float(png.headers["x-height-min"]), float(png.headers["x-height-max"])
    np.testing.assert_allclose(low + image / 65535 * (high - low), heights, atol=(high - low) / 65535 + 1e-4)


def test_terrain_mix_of_two_seeds_ends_at_each_seed(client):
    one = client.post("/v1/terrain", json={"seed": 1, "size": 33, "format": "f32"}).content
    two = client.post("/v1/terrain", json={"seed": 2, "size": 33, "format": "f32"}).content
    ends = [client.post("/v1/terrain", json={"seeds": [1, 2], "mix": m, "size": 33, "format": "f32"}) for m in (0, 1)]
    assert [e.content for e in ends] == [one, two]
    middle = client.post("/v1/terrain", json={"seeds": [1, 2], "mix": 0.5, "size": 33, "format": "f32"}).content
    assert middle not in (one, two)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"seed": 1, "size": 0}, "size"),
        ({"seed": 1, "size": 514}, "size"),
        ({"latent": [0.1] * 63}, "latent"),
        ({"latent": [0.1] * 63 + ["x"]}, "latent"),
        ({"seed": 1, "latent": [0.0] * 64}, "seed"),
        ({"seeds": [1], "mix": 0.5}, "seeds"),
        ({"seed": 1, "model": "terrain-xl"}, "model"),
        ({"seed": 1, "format": "obj"}, "format"),
        ({"seed": 1, "extent_m": -5}, "extent_m"),
    ],
)
def test_terrain_bad_input_gets_a_400_naming_the_field(client, body, words):
    response = client.post("/v1/terrain", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]


def test_terrain_needs_the_worlds_scope(worlds):
    outsider = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=worlds.data_dir).stdout.strip()
    with worlds.client(outsider) as c:
        response = c.post("/v1/terrain", json={"seed": 1})
        assert response.status_code == 403 and "worlds" in response.json()["error"]["message"]
    with httpx.Client(base_url=worlds.url) as anonymous:
        assert anonymous.post("/v1/terrain", json={"seed": 1}).status_code == 401


def test_one_key_cannot_fill_the_job_queue(client):
    accepted, refused = [], None
    for seed in range(20):
        response = client.post("/v1/scenes", json={"prompt": "a forest of forty pines", "seed": 100 + seed})
        if response.status_code == 429:
            refused = response
            break
        accepted.append(response.json()["id"])
    for job_id in accepted:
        client.delete(f"/v1/jobs/{job_id}")
    assert refused is not None, "twenty jobs queued for one key"
    assert "at most 8" in refused.json()["error"]["message"] and refused.headers["retry-after"]
    assert len(accepted) >= 8
