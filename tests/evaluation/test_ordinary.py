import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.errors import PolstereoError
from polstereo.evaluation.ordinary import OrdinaryStereoFolder
from polstereo.io.images import write_disparity, write_image, write_pfm
from polstereo.models.files import save_model
from polstereo.models.registry import build_model


def textured_pair(rng, h=40, w=56, shift=3):
    full = (rng.random((h, w + shift)) * 255).astype(np.uint8)
    return full[:, shift:], full[:, :w]


@pytest.fixture
def middlebury(tmp_path, rng):
    for scene in ("Adirondack", "Jadeplant"):
        d = tmp_path / "mb" / scene
        d.mkdir(parents=True)
        left, right = textured_pair(rng)
        write_image(d / "im0.png", np.stack([left] * 3, -1))
        write_image(d / "im1.png", np.stack([right] * 3, -1))
        disp = np.full(left.shape, 3.0, np.float32)
        disp[:, :2] = np.inf
        write_pfm(d / "disp0.pfm", disp)
    return tmp_path / "mb"


@pytest.fixture
def kitti(tmp_path, rng):
    root = tmp_path / "kitti"
    for sub in ("image_2", "image_3", "disp_occ_0"):
        (root / sub).mkdir(parents=True)
    left, right = textured_pair(rng)
    write_image(root / "image_2" / "000000_10.png", left)
    write_image(root / "image_3" / "000000_10.png", right)
    disp = np.full(left.shape, 3.0, np.float32)
    disp[:5] = np.nan
    write_disparity(root / "disp_occ_0" / "000000_10.png", disp)
    return root


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.ckpt"
    save_model(path, build_model({"base": "tiny", "correction": True}))
    return path


def test_middlebury_folder_reads_pairs_and_invalid_pixels(middlebury):
    folder = OrdinaryStereoFolder(middlebury)
    assert folder.layout == "middlebury" and len(folder) == 2
    batch = next(folder.batches())
    assert batch.left.shape == (1, 3, 40, 56) and not batch.polarized
    assert not batch.valid[..., :2].any() and batch.valid[..., 2:].all()
    assert torch.isnan(batch.disparity[..., :2]).all()


def test_kitti_folder_uses_zero_as_invalid(kitti):
    folder = OrdinaryStereoFolder(kitti)
    batch = next(folder.batches())
    assert folder.layout == "kitti" and batch.left.shape == (1, 1, 40, 56)
    assert batch.valid.sum() == 35 * 56


def test_eval_on_a_middlebury_folder_reports_all_pixels_only(middlebury, checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["eval", str(checkpoint), "--data", str(middlebury), "--json",
                                      str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "no polarization correction was applied" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    run = report["runs"][0]
    assert report["ordinary_pairs"] and run["samples"] == 2
    assert run["final"]["all"]["pixels"] == 2 * 40 * 54
    assert run["final"]["transparent"]["pixels"] == 0


def test_infer_on_a_middlebury_folder(middlebury, checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["infer", str(checkpoint), "--left", str(middlebury), "--out",
                                      str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert "no polarization correction was applied" in result.output
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["Adirondack", "Jadeplant"]


def test_folder_without_ground_truth_is_an_error(tmp_path, rng):
    scene = tmp_path / "s"
    scene.mkdir()
    left, right = textured_pair(rng)
    write_image(scene / "im0.png", left)
    write_image(scene / "im1.png", right)
    with pytest.raises(PolstereoError, match="without disp0.pfm"):
        OrdinaryStereoFolder(scene)
