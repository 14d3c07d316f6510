"""scripts/make_mitsuba_valset.py: seeded scenes, shards, coverage, and one tiny real render."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the script imports its sibling mitsuba_evidence

import make_mitsuba_valset as valset  # noqa: E402


def test_scene_description_depends_only_on_seed_and_index():
    first = valset.describe_pair(0, 5)
    assert valset.describe_pair(0, 5) == first
    assert json.loads(json.dumps(first)) == first  # plain data, written as scene.json
    assert valset.describe_pair(0, 6) != first
    assert valset.describe_pair(1, 5) != first


def test_shards_split_the_pairs_without_overlap():
    shards = [valset.shard_indices(10, i, 4) for i in range(4)]
    assert shards[1] == [1, 5, 9]
    assert sorted(sum(shards, [])) == list(range(10))
    assert valset.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(Exception):
            valset.parse_shard(bad)


def test_48_pairs_hold_every_glass_kind_lighting_family_and_setting():
    pairs = [valset.describe_pair(0, i) for i in range(48)]
    kinds = {g["kind"] for p in pairs for g in p["glass"]}
    assert kinds == set(valset.GLASS_KINDS)
    assert {p["lighting"]["family"] for p in pairs} == set(valset.LIGHTING_FAMILIES)
    assert sorted(p["setting"] for p in pairs) == ["tabletop"] * 24 + ["wall"] * 24
    assert all(1 <= len(p["glass"]) <= 3 and 1.45 <= g["ior"] <= 1.6 for p in pairs for g in p["glass"])
    assert any(g["brewster"] for p in pairs for g in p["glass"])
    assert {o["material"]["type"] for p in pairs for o in p["opaque"]} == {"diffuse", "pplastic"}


def test_vessel_mesh_is_closed_with_outward_normals():
    shape = {"radius": 0.5, "height": 1.0, "wall": 0.05, "base": 0.1}
    vertices, _, faces = valset.revolution_mesh(*valset.mesh_profile("vessel", shape))
    p0, p1, p2 = (vertices[faces[:, k]] for k in range(3))
    volume = np.einsum("ij,ij->i", p0, np.cross(p1, p2)).sum() / 6.0  # positive only if the normals point out
    glass = np.pi * (0.5**2 * 1.0 - 0.45**2 * 0.9)
    assert volume == pytest.approx(glass, rel=0.01)


def test_occlusion_marks_points_outside_the_right_view():
    focal, baseline, z = 100.0, 1.0, 10.0  # disparity 10 px everywhere: x < 9.5 leaves the right image
    h, w = 8, 40
    y, x = np.mgrid[0:h, 0:w] - np.array([(h - 1) / 2, (w - 1) / 2])[:, None, None]
    distance = z * np.sqrt(focal**2 + x**2 + y**2) / focal
    occlusion = valset.occlusion_mask(distance, distance, focal, baseline)
    assert occlusion[:, :10].all() and not occlusion[:, 10:].any()


def test_tiny_render_converts_into_a_valid_validation_file(tmp_path):
    pytest.importorskip("mitsuba", reason="mitsuba (pip install mitsuba) renders the set")
    from polstereo.data.h5 import H5Reader, validate

    out = tmp_path / "valset"
    assert valset.main([str(out), "--pairs", "1", "--size", "32", "24", "--spp", "1", "--max-depth", "4"]) == 0
    meta = json.loads((out / "src" / "pair000" / "meta.json").read_text())
    assert meta["lighting"] in valset.LIGHTING_FAMILIES and set(meta["glass_kinds"]) <= set(valset.GLASS_KINDS)
    assert not validate(out / "valset.h5")
    with H5Reader(out / "valset.h5") as reader:
        assert len(reader) == 1
        sample = reader.read(0)
    assert sample.left.shape == (4, 3, 24, 32) and np.nanmax(sample.disparity) <= valset.MAX_DISPARITY_PX + 1e-3
    # a second run renders nothing and leaves the file as it is
    stamp = (out / "valset.h5").stat().st_mtime_ns
    assert valset.main([str(out), "--pairs", "1", "--size", "32", "24", "--spp", "1", "--max-depth", "4"]) == 0
    assert (out / "valset.h5").stat().st_mtime_ns == stamp
