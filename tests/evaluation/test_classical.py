import json

import numpy as np
import torch
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.evaluation.classical import SGBMStereo, fill_holes_from_background, sgbm_disparity


def test_holes_take_the_smaller_of_the_nearest_valid_disparities_on_their_row():
    disparity = np.array([[9, -1, -1, 4, -1], [-1, 3, -1, -1, -1], [-1, -1, -1, -1, -1]], np.float32)
    filled = fill_holes_from_background(disparity, disparity >= 0)
    np.testing.assert_array_equal(filled, [[9, 4, 4, 4, 4], [3, 3, 3, 3, 3], [0, 0, 0, 0, 0]])


def test_sgbm_finds_a_known_shift_of_a_textured_pair():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 160), dtype=np.uint8)
    left = texture[:, 12:124].copy()
    right = texture[:, 19:131].copy()  # left x matches right x - 7
    disparity = sgbm_disparity(left, right, 32)
    assert np.median(np.abs(disparity[8:-8, 40:-8] - 7.0)) < 0.25


def test_sgbm_stereo_takes_angle_stacks_and_has_no_correction():
    left = torch.rand(1, 4, 1, 32, 64)
    out = SGBMStereo()(left, left.clone())
    assert out["disparity"].shape == (1, 1, 32, 64) and out["base_disparity"] is out["disparity"]
    assert SGBMStereo().correction is None


def test_eval_sgbm_scores_a_file_like_a_model(h5_file, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "sgbm", "--data", str(h5_file), "--json", str(tmp_path / "r.json"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["checkpoint"] == "sgbm" and report["runs"][0]["final"]["all"]["pixels"] > 0
    assert not report["has_correction"]


def test_exclude_occluded_scores_only_pixels_both_views_see(tmp_path):
    from polstereo.data.h5 import H5Reader, write_samples
    from polstereo.evaluation.samples import iterate_samples
    from tests.conftest import make_sample

    sample = make_sample(np.random.default_rng(3))
    sample.occlusion = np.zeros(sample.disparity.shape, np.uint8)
    sample.occlusion[:, :5] = 1
    write_samples(tmp_path / "s.h5", [sample])
    reader = H5Reader(tmp_path / "s.h5")
    every = next(iterate_samples(reader)).valid
    visible = next(iterate_samples(reader, exclude_occluded=True)).valid
    assert every[..., :5].any() and not visible[..., :5].any()
    assert torch.equal(every[..., 5:], visible[..., 5:])
